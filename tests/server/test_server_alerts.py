"""The alert catalogue and life cycle on a real store (SQLite and PostgreSQL).

Open once, update while the condition holds, clear when it ends; every change logged in
``alert_events``; conditions from gateway statuses, stale gateways, stock levels, reviewed
items and quiet periods.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from server_helpers import BASE_TIME, GTIN_A, Batches, Probe, sgtin

from server.alerts.stock_levels import StockLevel, level_alerts
from server.alerts.store import acknowledge, clear_alert, raise_alert, reconcile
from server.alerts.sweeps import AlertSweeper
from server.config.alerts import AlertSettings
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.gateway_health import health_alerts
from server.ingest.gateway_status import StatusRecorder
from server.metrics import Metrics
from server.rules.alerts import (
    ALERT_KINDS,
    GATEWAY_HEALTH_KINDS,
    LOW_STOCK,
    READER_DOWN,
    UNIT_SEEN_AFTER_SHIPPED,
    alert_kind,
)
from server.store.database import Store
from server.store.schema import core as schema
from server.store.schema.alerts import alert_events
from server.store.schema.orders import order_positions
from wire.models import Status

STATUS_TOPIC = "stockgate/v1/wh1/gw1/status"


class Clock:
    """A settable clock for the code under test."""

    def __init__(self, start: datetime = BASE_TIME) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def status_body(state: str = "online", **extra: Any) -> dict[str, Any]:
    return {
        "gateway": "gw1",
        "site": "wh1",
        "state": state,
        "at": BASE_TIME.isoformat(),
        **extra,
    }


def reader(name: str, state: str = "connected", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "llrp", "state": state, **extra}


async def events_of(probe: Probe) -> list[tuple[str, str, str]]:
    rows = await probe.rows(alert_events, alert_events.c.id)
    return [(row["change"], row["kind"], row["alert"]["subject"]) for row in rows]


async def open_alerts_of(probe: Probe, kind: str | None = None) -> dict[str, dict[str, Any]]:
    return {
        row["subject"]: row
        for row in await probe.alerts()
        if row["closed_at"] is None and (kind is None or row["kind"] == kind)
    }


# --- the catalogue ---------------------------------------------------------------------


def test_every_kind_says_when_it_opens_and_how_it_clears() -> None:
    assert len(ALERT_KINDS) >= 18
    for kind in ALERT_KINDS.values():
        assert kind.condition, kind.kind
        assert kind.clears_when, kind.kind
        assert kind.clears in ("condition", "quiet")
    with pytest.raises(KeyError, match="not in the catalogue"):
        alert_kind("no_such_kind")


def test_a_message_with_a_missing_field_still_renders() -> None:
    spec = UNIT_SEEN_AFTER_SHIPPED.raise_("urn:epc:id:sgtin:1.2.3", {})
    assert spec.message == "unit urn:epc:id:sgtin:1.2.3 was seen at ? after it was shipped"


# --- raise, update, clear, acknowledge -----------------------------------------------------


async def test_an_alert_opens_once_updates_while_it_holds_and_clears(
    store: Store, probe: Probe
) -> None:
    t0, t1, t2 = BASE_TIME, BASE_TIME + timedelta(minutes=1), BASE_TIME + timedelta(minutes=2)
    epc = sgtin(1)
    async with store.begin("test") as conn:
        opened = await raise_alert(
            conn, "unit_seen_after_shipped", epc, {"read_point": "wh1.dock.1"}, site="wh1", now=t0
        )
        updated = await raise_alert(
            conn, "unit_seen_after_shipped", epc, {"read_point": "wh1.dock.2"}, site="wh1", now=t1
        )
    async with store.begin("test") as conn:
        cleared = await clear_alert(conn, "unit_seen_after_shipped", epc, reason="found", now=t2)
        again = await clear_alert(conn, "unit_seen_after_shipped", epc, now=t2)

    assert opened is not None
    assert updated is not None
    assert cleared is not None
    assert (opened.change, updated.change, cleared.change, again) == (
        "opened",
        "updated",
        "cleared",
        None,
    )
    assert opened.event_id < updated.event_id < cleared.event_id
    assert updated.alert.id == opened.alert.id
    assert (updated.alert.count, updated.alert.updated_at) == (2, t1)
    assert updated.alert.evidence == {"read_point": "wh1.dock.2"}
    assert updated.alert.message == f"unit {epc} was seen at wh1.dock.2 after it was shipped"
    assert (cleared.alert.state, cleared.alert.closed_at) == ("closed", t2)
    assert cleared.alert.evidence["cleared"] == "found"
    [row] = await probe.alerts()
    assert (row["count"], row["site"], row["closed_at"]) == (2, "wh1", t2)
    assert await events_of(probe) == [
        ("opened", "unit_seen_after_shipped", epc),
        ("updated", "unit_seen_after_shipped", epc),
        ("cleared", "unit_seen_after_shipped", epc),
    ]

    async with store.begin("test") as conn:
        reopened = await raise_alert(conn, "unit_seen_after_shipped", epc, {}, now=t2)
    assert reopened is not None
    assert reopened.change == "opened"
    assert reopened.alert.id != opened.alert.id  # a new alert; the closed one is history


async def test_acknowledging_records_a_change_once(store: Store, probe: Probe) -> None:
    async with store.begin("test") as conn:
        change = await raise_alert(conn, "unknown_item", GTIN_A, {}, now=BASE_TIME)
    assert change is not None
    async with store.begin("test") as conn:
        first = await acknowledge(conn, change.alert.id, "olga", BASE_TIME)
        second = await acknowledge(conn, change.alert.id, "oscar", BASE_TIME)
    assert first is not None
    assert second is not None
    assert (second.state, second.acknowledged_by) == ("acknowledged", "olga")
    assert [c for c, _, _ in await events_of(probe)] == ["opened", "acknowledged"]


async def test_reconcile_opens_updates_only_on_change_and_clears_within_its_scope(
    store: Store, probe: Probe
) -> None:
    def down(name: str, error: str) -> Any:
        return READER_DOWN.raise_(
            f"gw1/{name}", {"gateway": "gw1", "reader": name, "last_error": error}
        )

    other = READER_DOWN.raise_("gw10/dock1", {"gateway": "gw10", "reader": "dock1"})
    t = [BASE_TIME + timedelta(seconds=s) for s in (0, 10, 20, 100, 110)]

    async def run(at: datetime, holding: list[Any], prefix: str = "gw1/") -> list[str]:
        async with store.begin("test") as conn:
            changes = await reconcile(
                conn,
                kinds=GATEWAY_HEALTH_KINDS,
                holding=holding,
                now=at,
                subject_prefix=prefix,
                min_update_s=60,
            )
        return [f"{c.change}:{c.alert.subject}" for c in changes]

    assert await run(t[0], [other], "gw10/") == ["opened:gw10/dock1"]
    assert await run(t[0], [down("dock1", "refused"), down("dock2", "refused")]) == [
        "opened:gw1/dock1",
        "opened:gw1/dock2",
    ]
    assert await run(t[1], [down("dock1", "refused"), down("dock2", "refused")]) == []
    # Evidence changed, but within min_update_s of opening: not yet.
    assert await run(t[2], [down("dock1", "timeout"), down("dock2", "refused")]) == []
    assert await run(t[3], [down("dock1", "timeout"), down("dock2", "refused")]) == [
        "updated:gw1/dock1"
    ]
    # dock2 is no longer down; gw10's alert is outside the scope and stays open.
    assert await run(t[4], [down("dock1", "timeout")]) == ["cleared:gw1/dock2"]
    assert set(await open_alerts_of(probe)) == {"gw1/dock1", "gw10/dock1"}
    assert (await open_alerts_of(probe))["gw1/dock1"]["evidence"]["last_error"] == "timeout"


# --- gateway health from statuses --------------------------------------------------------


def test_health_alerts_from_one_status() -> None:
    status = Status.model_validate(
        status_body(
            readers=[
                reader("dock1", "error", last_error="connection refused"),
                reader("dock2", "connecting"),
                reader("dock3", "connecting", last_error="timed out"),
                reader("dock4", antennas_disconnected=[3, 2]),
            ],
            buffer_depth=12,
            buffer_full=True,
            issues=[
                {
                    "kind": "unread_window",
                    "subject": "wh1.dock.1",
                    "severity": "warning",
                    "message": "a pallet went through unread",
                    "since": BASE_TIME.isoformat(),
                },
                {
                    "kind": "outbox_full",
                    "subject": "outbox",
                    "severity": "critical",
                    "message": "full",
                    "since": BASE_TIME.isoformat(),
                },
            ],
        )
    )
    specs = {(s.kind, s.subject): s for s in health_alerts(status, AlertSettings())}
    assert set(specs) == {
        ("reader_down", "gw1/dock1"),
        ("reader_down", "gw1/dock3"),
        ("antenna_down", "gw1/dock4/antenna 2"),
        ("antenna_down", "gw1/dock4/antenna 3"),
        ("outbox_backlog", "gw1/outbox"),
        ("gateway_issue", "gw1/unread_window/wh1.dock.1"),
    }
    backlog = specs[("outbox_backlog", "gw1/outbox")]
    assert backlog.severity == "critical"
    assert backlog.evidence["reasons"] == ["full"]
    assert "FULL" in backlog.message
    assert specs[("gateway_issue", "gw1/unread_window/wh1.dock.1")].message == (
        "gateway gw1: a pallet went through unread"
    )


async def test_statuses_open_and_clear_reader_antenna_and_backlog_alerts(
    store: Store, settings: ServerSettings, metrics: Metrics, probe: Probe
) -> None:
    pokes: list[int] = []
    recorder = StatusRecorder(
        store,
        settings.ingest,
        metrics,
        alerts=AlertSettings(backlog_depth=100, backlog_age_s=60),
        on_alerts=lambda: pokes.append(1),
    )
    bad = status_body(
        readers=[reader("dock1", "disconnected"), reader("dock2", antennas_disconnected=[4])],
        buffer_depth=150,
        oldest_unacked_age_s=90.0,
    )
    good = status_body(readers=[reader("dock1"), reader("dock2")], buffer_depth=3)
    await recorder.handle(STATUS_TOPIC, json.dumps(bad).encode())
    opened = await open_alerts_of(probe)
    await recorder.handle(STATUS_TOPIC, json.dumps(status_body("offline")).encode())
    while_offline = await open_alerts_of(probe)
    await recorder.handle(STATUS_TOPIC, json.dumps(good).encode())

    assert {(a["kind"], s) for s, a in opened.items()} == {
        ("reader_down", "gw1/dock1"),
        ("antenna_down", "gw1/dock2/antenna 4"),
        ("outbox_backlog", "gw1/outbox"),
    }
    assert opened["gw1/outbox"]["evidence"]["reasons"] == ["depth", "age"]
    assert opened["gw1/outbox"]["site"] == "wh1"
    # The last will says nothing about readers: their alerts stand beside gateway_offline.
    assert set(while_offline) == set(opened) | {"gw1"}
    assert await open_alerts_of(probe) == {}
    assert len(pokes) == 3
    changes = [(c, s) for c, _, s in await events_of(probe)]
    assert changes.count(("cleared", "gw1/dock1")) == 1
    assert ("cleared", "gw1") in changes


# --- sweeps ------------------------------------------------------------------------------


async def test_a_silent_gateway_is_marked_offline_and_its_next_status_clears_it(
    store: Store, settings: ServerSettings, metrics: Metrics, probe: Probe
) -> None:
    clock = Clock()
    alerts = AlertSettings(gateway_stale_s=30)
    recorder = StatusRecorder(store, settings.ingest, metrics, clock=clock, alerts=alerts)
    sweeper = AlertSweeper(store, alerts, clock=clock)
    await recorder.handle(STATUS_TOPIC, json.dumps(status_body()).encode())

    clock.advance(29)
    assert await sweeper.sweep_once() == 0
    clock.advance(2)
    assert await sweeper.sweep_once() == 1
    assert await sweeper.sweep_once() == 0  # once
    [gateway] = await probe.rows(schema.gateways)
    stale = await open_alerts_of(probe, "gateway_offline")
    await recorder.handle(STATUS_TOPIC, json.dumps(status_body()).encode())

    assert gateway["state"] == "offline"
    assert stale["gw1"]["evidence"]["reason"] == "stale"
    assert stale["gw1"]["severity"] == "critical"
    assert await open_alerts_of(probe) == {}
    [gateway] = await probe.rows(schema.gateways)
    assert gateway["state"] == "online"


async def set_policy(store: Store, sku: str, **values: int | None) -> None:
    async with store.begin("test") as conn:
        await conn.execute(schema.items.update().where(schema.items.c.sku == sku).values(**values))


async def test_low_stock_and_overstock_open_and_clear_with_the_stock_level(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    clock = Clock()
    sweeper = AlertSweeper(store, AlertSettings(min_update_s=0), clock=clock)

    async def receive(count: int, read_point: str = "wh1.dock.1") -> None:
        events = [
            batches.event(epc=sgtin(batches.seq + 1 + n), read_point=read_point)
            for n in range(count)
        ]
        await ingestor.handle(batches.topic, batches.payload(events))

    async def ship(serials: list[int]) -> None:
        events = [batches.event(epc=sgtin(n), direction="out") for n in serials]
        await ingestor.handle(batches.topic, batches.payload(events))

    await receive(3)  # serials 1-3 at wh1
    await receive(1, "wh10.dock.1")  # serial 4 at wh10 (another site)
    await set_policy(store, GTIN_A, reorder_point=2, reorder_quantity=3)
    await sweeper.sweep_once()
    # Per site: wh1 has 3 (above the reorder point 2), wh10 has 1.
    assert set(await open_alerts_of(probe, "low_stock")) == {f"wh10/{GTIN_A}"}

    await ship([1])  # wh1 has 2: at the reorder point
    await sweeper.sweep_once()
    low = await open_alerts_of(probe, "low_stock")
    assert set(low) == {f"wh10/{GTIN_A}", f"wh1/{GTIN_A}"}
    assert low[f"wh1/{GTIN_A}"]["evidence"]["available"] == 2
    assert low[f"wh1/{GTIN_A}"]["site"] == "wh1"

    await ship([2])  # 1 left: still low, evidence updated
    clock.advance(1)
    await sweeper.sweep_once()
    low = await open_alerts_of(probe, "low_stock")
    assert low[f"wh1/{GTIN_A}"]["evidence"]["available"] == 1

    # Open orders count: 4 on order at wh10 lifts it above the reorder point (1 + 4 - 0).
    items = await probe.items()
    async with store.begin("test") as conn:
        await conn.execute(
            order_positions.insert().values(
                item_id=items[GTIN_A]["id"],
                location_id="wh10.receiving",
                on_order=4,
                allocated=0,
                in_transit=0,
            )
        )
    await sweeper.sweep_once()
    assert set(await open_alerts_of(probe, "low_stock")) == {f"wh1/{GTIN_A}"}

    await receive(5)  # 6 at wh1: above the maximum 2 + 3
    await sweeper.sweep_once()
    assert await open_alerts_of(probe, "low_stock") == {}
    over = await open_alerts_of(probe, "overstock")
    assert set(over) == {f"wh1/{GTIN_A}"}
    assert over[f"wh1/{GTIN_A}"]["evidence"]["max_stock"] == 5

    await set_policy(store, GTIN_A, reorder_point=None, reorder_quantity=None)
    await sweeper.sweep_once()
    assert await open_alerts_of(probe, "low_stock") == {}
    assert await open_alerts_of(probe, "overstock") == {}


def test_available_counts_on_order_and_allocated() -> None:
    level = StockLevel(1, "SKU-1", None, "wh1", 4, on_order=3, allocated=5, reorder_point=2,
                       maximum=None)  # fmt: skip
    assert level.available == 2
    [spec] = level_alerts([level])
    assert (spec.kind, spec.subject, spec.site) == (LOW_STOCK.kind, "wh1/SKU-1", "wh1")
    assert "on order 3, allocated 5" in spec.message


async def test_unknown_item_clears_when_reviewed_and_occurrences_after_a_quiet_period(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    clock = Clock(BASE_TIME + timedelta(days=1))
    sweeper = AlertSweeper(store, AlertSettings(occurrence_quiet_s=3600), clock=clock)
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(1))]))
    async with store.begin("test") as conn:
        await raise_alert(conn, "unit_seen_after_shipped", sgtin(1), {}, now=clock.now)
    await sweeper.sweep_once()
    assert set(await open_alerts_of(probe)) >= {GTIN_A, sgtin(1)}

    async with store.begin("test") as conn:
        await conn.execute(
            schema.items.update().where(schema.items.c.gtin == GTIN_A).values(reviewed=True)
        )
    clock.advance(3599)
    await sweeper.sweep_once()
    assert sgtin(1) in await open_alerts_of(probe)
    assert GTIN_A not in await open_alerts_of(probe)
    clock.advance(2)
    await sweeper.sweep_once()
    assert sgtin(1) not in await open_alerts_of(probe)
    closed = {a["subject"]: a for a in await probe.alerts() if a["closed_at"] is not None}
    assert closed[GTIN_A]["evidence"]["cleared"] == "the item was reviewed"
    assert closed[sgtin(1)]["evidence"]["cleared"] == "quiet period passed"


async def test_old_alert_history_is_pruned(store: Store, probe: Probe) -> None:
    clock = Clock()
    sweeper = AlertSweeper(store, AlertSettings(history_days=1), clock=clock)
    async with store.begin("test") as conn:
        await raise_alert(conn, "unknown_item", GTIN_A, {}, now=clock.now)
        await conn.execute(alert_events.update().values(relayed_at=clock.now))
    clock.advance(86_400 + 1)
    await sweeper.sweep_once()
    assert await probe.count(alert_events) == 0
    assert len(await probe.alerts()) == 1  # the alert itself is kept


async def test_alert_kinds_are_served(store: Store, settings: ServerSettings) -> None:
    import httpx
    from server_helpers import VIEWER_KEY

    from server.api.factory import create_app

    app = create_app(store, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get(
            "/api/v1/alert-kinds", headers={"Authorization": f"Bearer {VIEWER_KEY}"}
        )
        anonymous = await http.get("/api/v1/alert-kinds")
    assert response.status_code == 200
    kinds = {k["kind"]: k for k in response.json()["items"]}
    assert set(kinds) == set(ALERT_KINDS)
    assert kinds["low_stock"]["clears"] == "condition"
    assert kinds["unit_seen_after_shipped"]["clears"] == "quiet"
    assert anonymous.status_code == 401
    assert sa is not None
