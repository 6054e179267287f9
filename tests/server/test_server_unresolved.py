"""Unresolved passes: portal passes without a direction are kept, listed, resolved once.

Driven through the ingestor and the HTTP API (httpx's ASGI transport) on SQLite and
PostgreSQL; ``test_server_unresolved_broker.py`` does the same through a real Mosquitto.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from server_helpers import (
    BASE_TIME,
    GTIN_A,
    OPERATOR_KEY,
    VIEWER_KEY,
    WH1_OPERATOR_KEY,
    WH2_VIEWER_KEY,
    Batches,
    Probe,
    bearer,
    make_scoped_settings,
    sgtin,
)

from server.alerts.store import clear_alert
from server.alerts.sweeps import AlertSweeper
from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.rules.stock import is_undirected_pass
from server.store.database import Store
from server.store.schema.passes import unresolved_passes
from wire.models import Event

VIEWER = bearer(VIEWER_KEY)
OPERATOR = bearer(OPERATOR_KEY)
PASSES = "/api/v1/unresolved-passes"


def undirected(
    batches: Batches,
    epc: str,
    *,
    read_point: str = "wh1.dock.1",
    group: str | None = None,
    at: datetime | None = None,
    **extra_evidence: Any,
) -> dict[str, Any]:
    """A portal pass the edge gave no direction (as ``edge.pipeline.Pass.to_event`` sends)."""
    event = batches.event(epc=epc, direction=None, read_point=read_point, at=at)
    when = datetime.fromisoformat(event["event_time"])
    event["biz_step"] = "other"
    event["confidence"] = 0.0
    event["reads"] = {
        "count": 7,
        "antennas": [1, 2],
        "peak_rssi": -51.5,
        "first_seen": (when - timedelta(seconds=3)).isoformat(),
        "last_seen": when.isoformat(),
        "outside_count": 4,
        "inside_count": 3,
        "reason": "no_separation",
        **extra_evidence,
    }
    if group is not None:
        event["group"] = group
    return event


def when_of(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["event_time"])


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_scoped_settings(database_url)


@pytest.fixture
async def client(
    store: Store, settings: ServerSettings, metrics: Metrics
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, settings, metrics)
    await app.state.read_points.seed()  # as the server does at start
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        yield http


async def listed(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(PASSES, params=params, headers=VIEWER)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def open_alerts(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get(
        "/api/v1/alerts", params={"kind": "unresolved_passes"}, headers=VIEWER
    )
    assert response.status_code == 200, response.text
    return {
        alert["subject"]: alert
        for alert in response.json()["items"]
        if alert["kind"] == "unresolved_passes" and alert["state"] != "closed"
    }


def test_only_portal_passes_without_direction_are_unresolved() -> None:
    batches = Batches()
    portal = Event.model_validate(undirected(batches, sgtin(1)))
    directed = Event.model_validate(batches.event(epc=sgtin(2)))
    sighting = Event.model_validate(
        batches.event(epc=sgtin(3), direction=None)
        | {
            "biz_step": "other",
            "reads": {
                "count": 1,
                "antennas": [1],
                "first_seen": BASE_TIME.isoformat(),
                "last_seen": BASE_TIME.isoformat(),
            },
        }
    )
    assert is_undirected_pass(portal)
    assert not is_undirected_pass(directed)
    assert not is_undirected_pass(sighting)  # a cooldown reader's sighting: no sides


async def test_undirected_pass_is_kept_listed_resolved_once_and_reversible(
    ingestor: Ingestor, client: httpx.AsyncClient, probe: Probe, metrics: Metrics
) -> None:
    batches = Batches()
    event = undirected(batches, sgtin(1), group="pallet-7")
    payload = batches.payload([event])
    first = await ingestor.handle(batches.topic, payload)
    again = await ingestor.handle(batches.topic, payload)  # redelivery: kept once
    assert (first.applied, first.movements, again.applied) == (1, 0, 0)
    assert await probe.ledger() == []

    [item] = await listed(client)
    assert item["read_point"] == "wh1.dock.1"
    assert item["epc"] == sgtin(1)
    assert item["gtin"] == GTIN_A
    assert item["group"] == "pallet-7"
    assert item["event_id"] == event["event_id"]
    assert datetime.fromisoformat(item["time"]) == when_of(event)
    assert item["state"] == "open"
    assert item["resolution"] is None
    # The whole ``reads`` object, as sent (times as the wire model writes them).
    sent = {k: v for k, v in event["reads"].items() if k not in ("first_seen", "last_seen")}
    assert {k: item["evidence"][k] for k in sent} == sent
    assert datetime.fromisoformat(item["evidence"]["last_seen"]) == when_of(event)
    assert "wh1.dock.1" in await open_alerts(client)

    resolved = await client.post(
        f"{PASSES}/{item['id']}/resolve", json={"direction": "in"}, headers=OPERATOR
    )
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    [movement] = body["movements"]
    assert (movement["kind"], movement["to_location"], movement["actor"]) == (
        "receipt",
        "wh1.receiving",
        "olga",
    )
    assert movement["event_id"] == event["event_id"]
    [done] = body["items"]
    assert (done["state"], done["resolution"], done["resolved_by"]) == ("resolved", "in", "olga")
    assert done["movement_id"] == movement["id"]
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 1}
    assert (await probe.units())[sgtin(1)]["status"] == "in_stock"
    assert await open_alerts(client) == {}

    twice = await client.post(
        f"{PASSES}/{item['id']}/resolve", json={"direction": "out"}, headers=OPERATOR
    )
    assert twice.status_code == 409
    assert "resolved already" in twice.json()["detail"]
    assert len(await probe.ledger()) == 1

    reversal = await client.post(
        "/api/v1/reversals",
        json={"movement_id": movement["id"], "note": "resolved the wrong way"},
        headers=OPERATOR,
    )
    assert reversal.status_code == 201, reversal.text
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 0}
    assert await listed(client) == []
    assert [p["id"] for p in await listed(client, state="resolved")] == [item["id"]]
    metrics_text = metrics.render().decode()
    assert 'stockgate_unresolved_passes_total{read_point="wh1.dock.1"} 1.0' in metrics_text
    assert (
        'stockgate_resolved_passes_total{direction="in",read_point="wh1.dock.1"} 1.0'
        in metrics_text
    )


async def test_out_ships_and_ignore_moves_nothing(
    ingestor: Ingestor, client: httpx.AsyncClient, probe: Probe
) -> None:
    batches = Batches()
    received = batches.event(epc=sgtin(1))
    left = undirected(batches, sgtin(1))
    stray = undirected(batches, sgtin(2))
    await ingestor.handle(batches.topic, batches.payload([received, left, stray]))
    by_epc = {p["epc"]: p["id"] for p in await listed(client)}
    assert set(by_epc) == {sgtin(1), sgtin(2)}

    out = await client.post(
        f"{PASSES}/{by_epc[sgtin(1)]}/resolve", json={"direction": "out"}, headers=OPERATOR
    )
    assert out.status_code == 200, out.text
    assert [m["kind"] for m in out.json()["movements"]] == ["shipment"]
    ignored = await client.post(
        f"{PASSES}/{by_epc[sgtin(2)]}/resolve", json={"direction": "ignore"}, headers=OPERATOR
    )
    assert ignored.status_code == 200, ignored.text
    assert ignored.json()["movements"] == []
    assert ignored.json()["items"][0]["movement_id"] is None
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 0}
    units = await probe.units()
    assert units[sgtin(1)]["status"] == "shipped"
    assert sgtin(2) not in units
    assert await open_alerts(client) == {}


async def test_a_later_event_keeps_the_unit_where_it_went(
    ingestor: Ingestor, client: httpx.AsyncClient, probe: Probe
) -> None:
    batches = Batches()
    passed = undirected(batches, sgtin(1), at=BASE_TIME)
    later = batches.event(epc=sgtin(1), read_point="wh1.dock.2", at=BASE_TIME + timedelta(hours=1))
    await ingestor.handle(batches.topic, batches.payload([passed, later]))
    [item] = await listed(client)
    response = await client.post(
        f"{PASSES}/{item['id']}/resolve", json={"direction": "in"}, headers=OPERATOR
    )
    assert response.status_code == 200, response.text
    # The resolution is history from before the later receipt: the unit stays where the
    # newer event put it (last writer by event time), and the late receipt says so.
    unit = (await probe.units())[sgtin(1)]
    assert unit["location_id"] == "wh1.receiving.overflow"
    assert unit["last_event_id"] == later["event_id"]
    [movement] = response.json()["movements"]
    assert datetime.fromisoformat(movement["event_time"]) == BASE_TIME


async def test_a_group_resolves_in_one_call(
    ingestor: Ingestor, client: httpx.AsyncClient, probe: Probe
) -> None:
    batches = Batches()
    pallet = [undirected(batches, sgtin(n), group="g-1") for n in range(1, 4)]
    other = undirected(batches, sgtin(9), group="g-2")
    elsewhere = undirected(batches, sgtin(8), group="g-1", read_point="wh1.dock.2")
    await ingestor.handle(batches.topic, batches.payload([*pallet, other, elsewhere]))
    assert set(await open_alerts(client)) == {"wh1.dock.1", "wh1.dock.2"}
    assert len(await listed(client, group="g-1")) == 4

    ambiguous = await client.post(
        f"{PASSES}/resolve", json={"group": "g-1", "direction": "in"}, headers=OPERATOR
    )
    assert ambiguous.status_code == 409
    assert "read point" in ambiguous.json()["detail"]

    response = await client.post(
        f"{PASSES}/resolve",
        json={"group": "g-1", "read_point": "wh1.dock.1", "direction": "in"},
        headers=OPERATOR,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(p["epc"] for p in body["items"]) == [sgtin(n) for n in range(1, 4)]
    assert len(body["movements"]) == 3
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 3}
    # g-2 is still open at the same door: its alert holds; wh1.dock.2's too.
    assert set(await open_alerts(client)) == {"wh1.dock.1", "wh1.dock.2"}

    again = await client.post(
        f"{PASSES}/resolve",
        json={"group": "g-1", "read_point": "wh1.dock.1", "direction": "in"},
        headers=OPERATOR,
    )
    assert again.status_code == 404
    ids = [p["id"] for p in await listed(client)]
    by_ids = await client.post(
        f"{PASSES}/resolve", json={"ids": ids, "direction": "ignore"}, headers=OPERATOR
    )
    assert by_ids.status_code == 200, by_ids.text
    assert await open_alerts(client) == {}
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 3}


async def test_bulk_by_ids_is_all_or_nothing(
    ingestor: Ingestor, client: httpx.AsyncClient, probe: Probe
) -> None:
    batches = Batches()
    await ingestor.handle(
        batches.topic, batches.payload([undirected(batches, sgtin(n)) for n in (1, 2)])
    )
    first, second = sorted(p["id"] for p in await listed(client))
    done = await client.post(
        f"{PASSES}/{first}/resolve", json={"direction": "in"}, headers=OPERATOR
    )
    assert done.status_code == 200
    both = await client.post(
        f"{PASSES}/resolve", json={"ids": [second, first], "direction": "in"}, headers=OPERATOR
    )
    assert both.status_code == 409
    assert [p["id"] for p in await listed(client)] == [second]
    assert len(await probe.ledger()) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"direction": "sideways"},
        {},
        {"direction": "in", "group": "g", "ids": [1]},
        {"direction": "in"},
        {"direction": "in", "ids": []},
        {"direction": "in", "ids": [1, 1]},
        {"direction": "in", "ids": [1], "read_point": "wh1.dock.1"},
        {"direction": "in", "group": "g", "extra": 1},
    ],
)
async def test_bad_resolve_bodies_get_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post(f"{PASSES}/resolve", json=body, headers=OPERATOR)
    assert response.status_code == 422, response.text


async def test_roles_and_sites(ingestor: Ingestor, client: httpx.AsyncClient) -> None:
    wh1 = Batches()
    await ingestor.handle(wh1.topic, wh1.payload([undirected(wh1, sgtin(1))]))
    wh2 = Batches(site="wh2", gateway="gw2")
    await ingestor.handle(
        wh2.topic, wh2.payload([undirected(wh2, sgtin(2), read_point="wh2.dock.1")])
    )
    everything = {p["epc"]: p for p in await listed(client)}
    assert {p["site"] for p in everything.values()} == {"wh1", "wh2"}
    wh1_pass, wh2_pass = everything[sgtin(1)]["id"], everything[sgtin(2)]["id"]

    viewer = await client.post(
        f"{PASSES}/{wh1_pass}/resolve", json={"direction": "in"}, headers=VIEWER
    )
    assert viewer.status_code == 403
    anonymous = await client.post(f"{PASSES}/{wh1_pass}/resolve", json={"direction": "in"})
    assert anonymous.status_code == 401

    seen = await client.get(PASSES, headers=bearer(WH2_VIEWER_KEY))
    assert [p["epc"] for p in seen.json()["items"]] == [sgtin(2)]
    other_site = await client.get(PASSES, params={"site": "wh1"}, headers=bearer(WH2_VIEWER_KEY))
    assert other_site.status_code == 403
    hidden = await client.get(f"{PASSES}/{wh1_pass}", headers=bearer(WH2_VIEWER_KEY))
    assert hidden.status_code == 404

    wh1_operator = bearer(WH1_OPERATOR_KEY)
    refused = await client.post(
        f"{PASSES}/{wh2_pass}/resolve", json={"direction": "in"}, headers=wh1_operator
    )
    assert refused.status_code == 404
    group_elsewhere = await client.post(
        f"{PASSES}/resolve", json={"ids": [wh2_pass], "direction": "in"}, headers=wh1_operator
    )
    assert group_elsewhere.status_code == 404
    allowed = await client.post(
        f"{PASSES}/{wh1_pass}/resolve", json={"direction": "in"}, headers=wh1_operator
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["items"][0]["resolved_by"] == "wh1-olga"


async def test_listing_filters_and_pages(ingestor: Ingestor, client: httpx.AsyncClient) -> None:
    batches = Batches()
    events = [
        undirected(batches, sgtin(n), group=f"g-{n % 2}", at=BASE_TIME + timedelta(minutes=n))
        for n in range(1, 8)
    ]
    events.append(undirected(batches, sgtin(20), read_point="wh1.dock.2"))
    await ingestor.handle(batches.topic, batches.payload(events))

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, "read_point": "wh1.dock.1"}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(PASSES, params=params, headers=VIEWER)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(p["id"] for p in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None or pages > 10:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    times = [p["time"] for p in await listed(client, read_point="wh1.dock.1")]
    assert times == sorted(times, reverse=True)
    assert {p["epc"] for p in await listed(client, group="g-0")} == {sgtin(n) for n in (2, 4, 6)}
    window = await listed(
        client,
        since=(BASE_TIME + timedelta(minutes=2)).isoformat(),
        until=(BASE_TIME + timedelta(minutes=4)).isoformat(),
    )
    assert {p["epc"] for p in window} == {sgtin(2), sgtin(3)}
    assert [p["epc"] for p in await listed(client, epc=sgtin(20))] == [sgtin(20)]
    assert await listed(client, state="resolved") == []
    assert len(await listed(client, state="all")) == 8
    for params in ({"state": "closed"}, {"cursor": "nonsense!"}, {"limit": 0}):
        response = await client.get(PASSES, params=params, headers=VIEWER)
        assert 400 <= response.status_code < 500, params


async def test_a_directed_pass_with_a_group_is_counted_per_direction(
    ingestor: Ingestor, metrics: Metrics
) -> None:
    batches = Batches()
    events = [batches.event(epc=sgtin(n)) | {"group": "g-1"} for n in range(1, 4)]
    events.append(batches.event(epc=sgtin(9)))
    await ingestor.handle(batches.topic, batches.payload(events))
    text = metrics.render().decode()
    assert (
        'stockgate_group_direction_passes_total{direction="in",read_point="wh1.dock.1"} 3.0' in text
    )


async def test_the_sweep_keeps_the_alert_exactly_while_a_pass_is_open(
    ingestor: Ingestor, client: httpx.AsyncClient, store: Store, settings: ServerSettings
) -> None:
    batches = Batches()
    await ingestor.handle(batches.topic, batches.payload([undirected(batches, sgtin(1))]))
    sweeper = AlertSweeper(store, settings.alerts)
    assert await sweeper.sweep_once() == 0  # open pass, open alert: nothing to change
    # As if a resolve on another instance had closed it while this pass arrived.
    async with store.begin("test: closing the alert") as conn:
        await clear_alert(conn, "unresolved_passes", "wh1.dock.1", reason="test")
    assert await open_alerts(client) == {}
    assert await sweeper.sweep_once() == 1
    reopened = (await open_alerts(client))["wh1.dock.1"]
    assert (reopened["evidence"]["open"], reopened["site"]) == (1, "wh1")
    # And the other way round: the pass resolved without the alert noticing.
    async with store.begin("test: resolving behind the alert's back") as conn:
        await conn.execute(unresolved_passes.update().values(state="resolved", resolution="ignore"))
    assert await sweeper.sweep_once() == 1
    assert await open_alerts(client) == {}


async def test_two_resolves_at_once_apply_one(
    ingestor: Ingestor, client: httpx.AsyncClient, probe: Probe
) -> None:
    batches = Batches()
    pallet = [undirected(batches, sgtin(n), group="g-9") for n in (1, 2)]
    await ingestor.handle(batches.topic, batches.payload(pallet))
    first = min(p["id"] for p in await listed(client))
    # One pass named alone and through its group, both at once: whichever transaction
    # locks it first resolves it, the other finds it resolved.
    single, group = await asyncio.gather(
        client.post(f"{PASSES}/{first}/resolve", json={"direction": "out"}, headers=OPERATOR),
        client.post(
            f"{PASSES}/resolve", json={"ids": [first], "direction": "in"}, headers=OPERATOR
        ),
    )
    assert sorted((single.status_code, group.status_code)) == [200, 409]
    assert len(await probe.ledger()) == 1
    [row] = await listed(client, state="resolved")
    assert row["id"] == first
