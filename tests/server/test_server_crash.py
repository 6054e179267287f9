"""A ``kill -9`` of the server while batches are in its pipeline loses and doubles nothing.

Real parts: Mosquitto, ``stockgate server`` as its own process on a SQLite file or on
PostgreSQL, and edge-like publishers that do what the edge's outbox does: keep every batch
until its Ack, and publish again whatever is still unacknowledged every ``RESEND_S``. The
server is killed with SIGKILL once part of the batches are acknowledged (others are then
being checked, committed or acknowledged, or are still queued at the broker) and started
again on the same database and MQTT session. When every batch is acknowledged, each event
is in the ledger exactly once, with its event id claimed once, and the balances agree
with the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bench.server_proc import ServerProcess
from bench.server_workload import Batch, build_batches, read_points
from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from server.config.settings import DatabaseSettings
from server.store.check import check_ledger
from server.store.database import Store
from wire import topics
from wire.models import Ack, EventBatch

pytestmark = pytest.mark.broker

BATCHES_PER_GATEWAY = 6
WINDOW = 2
"""Unacknowledged batches per gateway at most (the edge's ``max_in_flight``)."""
RESEND_S = 2.0
"""How long an unacknowledged batch waits before it is published again."""
RESEND_POLL_S = 0.2
KILL_AFTER_ACKS = 4
"""Acknowledged batches (of 24) before the SIGKILL: at most 8 are out then, 12 or more
not yet published."""
IN_HAND_S = 0.05
"""After the gateways published their next batches, the kill waits this long: the broker
has handed them to the server, which takes longer than this to commit and ack 8 batches
of 500 events (about 0.2 s here)."""
DONE_TIMEOUT_S = 120.0


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database the server migrates itself: a new SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@dataclass
class Outbox:
    """What an edge holds: every batch until its Ack; at most ``WINDOW`` unacknowledged out
    at a time, each published again after ``RESEND_S`` without its Ack."""

    batches: list[Batch]
    progress: asyncio.Event
    """Set on every Ack and publish (shared by the gateways)."""
    acked: set[str] = field(default_factory=set)
    sent_at: dict[str, float] = field(default_factory=dict)
    publishes: int = 0
    got_ack: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return len(self.acked) == len(self.batches)

    def due(self, now: float) -> list[Batch]:
        window = [b for b in self.batches if b.batch_id not in self.acked][:WINDOW]
        return [b for b in window if now - self.sent_at.get(b.batch_id, -RESEND_S) >= RESEND_S]


async def _gateway(settings: MqttSettings, outbox: Outbox) -> None:
    gateway = outbox.batches[0].gateway
    loop = asyncio.get_running_loop()
    async with MqttClient(settings, f"crash-edge-{gateway}") as client:
        await client.wait_connected(timeout=10)
        await client.subscribe(topics.ack("wh1", gateway), qos=1)

        async def receive() -> None:
            async for message in client.messages():
                for acked in Ack.model_validate_json(message.payload).batches:
                    outbox.acked.add(acked.batch_id)
                outbox.got_ack.set()
                outbox.progress.set()
                if outbox.done:
                    return

        async with asyncio.TaskGroup() as tasks:
            receiving = tasks.create_task(receive())
            while not receiving.done():
                outbox.got_ack.clear()
                for batch in outbox.due(loop.time()):
                    await client.publish(batch.topic, batch.payload, qos=1)
                    outbox.sent_at[batch.batch_id] = loop.time()
                    outbox.publishes += 1
                    outbox.progress.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RESEND_POLL_S):
                        await outbox.got_ack.wait()


async def _edges(mqtt_url: str, outboxes: list[Outbox]) -> None:
    settings = MqttSettings(url=mqtt_url)
    async with asyncio.timeout(DONE_TIMEOUT_S), asyncio.TaskGroup() as tasks:
        for outbox in outboxes:
            tasks.create_task(_gateway(settings, outbox))


def _event_ids(batch: Batch) -> list[str]:
    return [event.event_id for event in EventBatch.model_validate_json(batch.payload).events]


def _acked(outboxes: list[Outbox]) -> int:
    return sum(len(outbox.acked) for outbox in outboxes)


def _published(outboxes: list[Outbox]) -> int:
    return sum(outbox.publishes for outbox in outboxes)


async def _ledger(url: str) -> tuple[list[str], int, list[str]]:
    store = Store.open(DatabaseSettings(url=url))
    try:
        async with store.read("reading the ledger") as conn:
            ids = list((await conn.execute(sa.text("SELECT event_id FROM ledger"))).scalars())
            seen = (await conn.execute(sa.text("SELECT COUNT(*) FROM seen_events"))).scalar_one()
        problems = await check_ledger(store)
    finally:
        await store.close()
    return ids, int(seen), problems


async def test_sigkill_mid_pipeline_loses_and_doubles_nothing(
    tmp_path: Path, mosquitto: Any, database: str
) -> None:
    per_gateway = build_batches(BATCHES_PER_GATEWAY)
    progress = asyncio.Event()
    outboxes = [Outbox(mine, progress) for mine in per_gateway]
    sent = [event for mine in per_gateway for batch in mine for event in _event_ids(batch)]
    total = sum(len(mine) for mine in per_gateway)
    server = ServerProcess(
        tmp_path, mqtt_url=mosquitto.url, database=database, read_points=read_points()
    )
    await asyncio.to_thread(server.start)
    try:
        edges = asyncio.create_task(_edges(mosquitto.url, outboxes))
        async with asyncio.timeout(DONE_TIMEOUT_S):
            while _acked(outboxes) < KILL_AFTER_ACKS:
                progress.clear()
                await progress.wait()
            # The Acks of a group go out together; the gateways then publish their next
            # batches. Killed while it holds those (taken from the broker, not yet
            # committed), the server loses them and the edges must publish them again.
            refilled = _acked(outboxes) + len(outboxes) * WINDOW
            while _published(outboxes) < min(refilled, total):
                progress.clear()
                await progress.wait()
            await asyncio.sleep(IN_HAND_S)
        status = await asyncio.to_thread(server.kill)
        acked_at_kill = _acked(outboxes)
        assert status == -signal.SIGKILL
        # Killed mid-way: batches were acknowledged, others were not yet.
        assert KILL_AFTER_ACKS <= acked_at_kill < total
        await asyncio.to_thread(server.start)
        await edges
    finally:
        await asyncio.to_thread(server.stop)

    ledger_ids, seen, problems = await _ledger(database)
    assert all(outbox.done for outbox in outboxes)
    # Unacknowledged batches were published again (the edge's re-send did its part).
    assert _published(outboxes) > total
    assert len(ledger_ids) == len(sent)
    assert sorted(ledger_ids) == sorted(sent)
    assert seen == len(sent)
    assert problems == []
