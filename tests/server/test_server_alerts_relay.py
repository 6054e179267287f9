"""Alert changes out on MQTT (opened, updated, cleared, acknowledged) and into the webhook
outbox: through a recording publisher on both databases, and through a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from server_helpers import (
    BASE_TIME,
    GTIN_A,
    Batches,
    Probe,
    RecordingPublisher,
    make_settings,
    sgtin,
)

from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from server.alerts.relay import AlertNotice, AlertRelay
from server.alerts.store import acknowledge, clear_alert, raise_alert, raise_alerts
from server.app import Server
from server.config.alerts import AlertSettings, WebhookSettings
from server.ingest.consumer import Ingestor
from server.rules.alerts import UNIT_SEEN_AFTER_SHIPPED
from server.store.database import Store
from server.store.schema.alerts import alert_events, webhook_deliveries

ALERTS_TOPIC = "stockgate/v1/wh1/alerts"
READY_TIMEOUT_S = 20.0
MESSAGE_TIMEOUT_S = 10.0


def hook(name: str, **extra: Any) -> WebhookSettings:
    return WebhookSettings.model_validate(
        {"name": name, "url": "http://127.0.0.1:9/hook", "secret": "s" * 20, **extra}
    )


async def test_every_change_goes_out_as_a_notice(
    store: Store, ingestor: Ingestor, batches: Batches, publisher: RecordingPublisher
) -> None:
    relay = AlertRelay(store, publisher, AlertSettings())
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(1))]))
    [opened] = publisher.on(ALERTS_TOPIC)  # at once, by ingest itself

    async with store.begin("test") as conn:
        await raise_alert(conn, "unknown_item", GTIN_A, {"again": True}, site="wh1")
    async with store.begin("test") as conn:
        await acknowledge(conn, opened["id"], "olga", BASE_TIME)
    async with store.begin("test") as conn:
        await clear_alert(conn, "unknown_item", GTIN_A)
    assert await relay.flush() == 3
    assert await relay.flush() == 0

    notices = [AlertNotice.model_validate(n) for n in publisher.on(ALERTS_TOPIC)]
    assert [(n.change, n.kind, n.subject) for n in notices] == [
        ("opened", "unknown_item", GTIN_A),
        ("updated", "unknown_item", GTIN_A),
        ("acknowledged", "unknown_item", GTIN_A),
        ("cleared", "unknown_item", GTIN_A),
    ]
    assert [n.event_id for n in notices] == sorted(n.event_id for n in notices)
    assert (notices[1].count, notices[1].evidence) == (2, {"again": True})
    assert notices[2].acknowledged_by == "olga"
    assert (notices[3].state, notices[3].closed_at is not None) == ("closed", True)


async def test_a_broker_outage_delays_notices_in_order_and_loses_none(
    store: Store, probe: Probe
) -> None:
    publisher = RecordingPublisher(fail=True)
    relay = AlertRelay(store, publisher, AlertSettings(mqtt_retry_s=3600))
    async with store.begin("test") as conn:
        for n in range(3):
            await raise_alert(conn, "unit_seen_after_shipped", sgtin(n), {}, site="wh1")
    assert await relay.flush() == 0
    rows = await probe.rows(alert_events, alert_events.c.id)
    assert [row["relayed_at"] for row in rows] == [None] * 3
    assert [row["lease_until"] for row in rows] == [None] * 3  # released, not parked

    publisher.fail = False
    assert await relay.flush() == 3
    assert [n["subject"] for n in publisher.on(ALERTS_TOPIC)] == [sgtin(n) for n in range(3)]


async def test_a_notice_too_old_to_publish_is_given_up(store: Store, probe: Probe) -> None:
    publisher = RecordingPublisher(fail=True)
    relay = AlertRelay(
        store, publisher, AlertSettings(mqtt_retry_s=60), clock=lambda: BASE_TIME + timedelta(2)
    )
    async with store.begin("test") as conn:
        await raise_alert(conn, "unknown_item", GTIN_A, {}, site="wh1", now=BASE_TIME)
    assert await relay.flush() == 1
    [row] = await probe.rows(alert_events)
    assert row["relayed_at"] is not None


async def test_fan_out_queues_one_delivery_per_matching_webhook(
    store: Store, probe: Probe, publisher: RecordingPublisher
) -> None:
    hooks = [
        hook("everything"),
        hook("stock", kinds=["low_stock", "unknown_item"]),
        hook("wh2-only", sites=["wh2"]),
        hook("openings", changes=["opened"]),
    ]
    relay = AlertRelay(store, publisher, AlertSettings(), hooks)
    async with store.begin("test") as conn:
        await raise_alert(conn, "unknown_item", GTIN_A, {}, site="wh1")
        await raise_alert(conn, "unknown_item", GTIN_A, {}, site="wh1")  # updated
        await raise_alert(conn, "reader_down", "gw2/dock1", {}, site="wh2")
        await raise_alert(conn, "low_stock", "x/SKU", {})  # no site: no MQTT topic
    await relay.flush()
    async with store.begin("test") as conn:
        await conn.execute(alert_events.update().values(relayed_at=None))  # a second fan-out
    await relay.flush()

    deliveries = await probe.rows(webhook_deliveries, webhook_deliveries.c.id)
    events = {row["id"]: row for row in await probe.rows(alert_events)}
    got = sorted(
        (
            d["webhook"],
            events[d["event_id"]]["kind"],
            events[d["event_id"]]["change"],
        )
        for d in deliveries
    )
    assert got == sorted(
        [
            ("everything", "unknown_item", "opened"),
            ("everything", "unknown_item", "updated"),
            ("everything", "reader_down", "opened"),
            ("everything", "low_stock", "opened"),
            ("stock", "unknown_item", "opened"),
            ("stock", "unknown_item", "updated"),
            ("stock", "low_stock", "opened"),
            ("wh2-only", "reader_down", "opened"),
            ("openings", "unknown_item", "opened"),
            ("openings", "reader_down", "opened"),
            ("openings", "low_stock", "opened"),
        ]
    )
    assert {d["state"] for d in deliveries} == {"pending"}
    # The site-less alert went nowhere on MQTT; the other three went once each, then
    # again after relayed_at was reset (at least once).
    assert len(publisher.on(ALERTS_TOPIC)) == 4
    assert len(publisher.on("stockgate/v1/wh2/alerts")) == 2


async def test_two_relays_on_one_database_publish_each_change_once(
    store: Store, settings: Any
) -> None:
    publishers = [RecordingPublisher(), RecordingPublisher()]
    relays = [AlertRelay(store, p, AlertSettings()) for p in publishers]
    other = Store.open(settings.database)  # a second instance has its own engine
    relays[1] = AlertRelay(other, publishers[1], AlertSettings())
    try:
        specs = [UNIT_SEEN_AFTER_SHIPPED.raise_(sgtin(n), {}) for n in range(300)]
        async with store.begin("test") as conn:
            await raise_alerts(conn, specs, "wh1", BASE_TIME)
        await asyncio.gather(*(relay.flush() for relay in relays))
        await asyncio.gather(*(relay.flush() for relay in relays))
    finally:
        await other.close()
    subjects = [n["subject"] for p in publishers for n in p.on(ALERTS_TOPIC)]
    assert sorted(subjects) == sorted(sgtin(n) for n in range(300))


# --- through a real broker ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    ready = asyncio.Event()
    task = asyncio.create_task(server.run(ready), name="test-server")
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                waiter.cancel()
                task.result()
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_notice(messages: AsyncIterator[Any]) -> AlertNotice:
    async with asyncio.timeout(MESSAGE_TIMEOUT_S):
        message = await anext(messages)
    return AlertNotice.model_validate_json(message.payload)


@pytest.mark.broker
async def test_gateway_health_alerts_open_and_clear_on_the_alerts_topic(
    mosquitto: Any, tmp_path: Path
) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
        mqtt={"url": mosquitto.url, "client_id": "stockgate-server-alerts"},
    )

    def status(state: str) -> bytes:
        body = {
            "gateway": "gw1",
            "site": "wh1",
            "state": "online",
            "at": BASE_TIME.isoformat(),
            "readers": [{"name": "dock1", "kind": "llrp", "state": state}],
        }
        return json.dumps(body).encode()

    async with (
        running(Server(settings)),
        MqttClient(MqttSettings(url=mosquitto.url), "watcher") as watcher,
    ):
        await watcher.wait_connected(MESSAGE_TIMEOUT_S)
        await watcher.subscribe(ALERTS_TOPIC)
        messages = aiter(watcher.messages())
        await watcher.publish("stockgate/v1/wh1/gw1/status", status("error"))
        opened = await next_notice(messages)
        await watcher.publish("stockgate/v1/wh1/gw1/status", status("connected"))
        cleared = await next_notice(messages)

    assert (opened.change, opened.kind, opened.subject, opened.severity) == (
        "opened",
        "reader_down",
        "gw1/dock1",
        "critical",
    )
    assert (cleared.change, cleared.id, cleared.state) == ("cleared", opened.id, "closed")
