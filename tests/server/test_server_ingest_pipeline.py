"""``server.ingest.pipeline``: messages in, checked, planned, written; Acks after commits.

The messages come from a queue standing for the MQTT subscription and the Acks go to a
publisher standing for the broker (the pipeline's two I/O ports); the database is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from server_helpers import Batches, Probe, sgtin

from plumbing.mqtt import Message
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.gateway_status import StatusRecorder
from server.ingest.pipeline import events_per_write, run_ingest
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema import core as schema

WAIT_S = 20.0


class HeldPublisher:
    """The broker's side of an Ack: held (no PUBACK) until ``release``."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        """Batch ids of the Acks sent, in order."""
        self.done: list[str] = []
        """Batch ids of the Acks the broker confirmed, in order."""
        self.release = asyncio.Event()

    async def __call__(self, topic: str, payload: bytes) -> None:
        ids = [batch["batch_id"] for batch in json.loads(payload)["batches"]]
        self.sent += ids
        await self.release.wait()
        self.done += ids


async def _messages(queue: asyncio.Queue[Message]) -> AsyncIterator[Message]:
    while True:
        yield await queue.get()


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT_S):
        # Polls the database: nothing signals a commit to a test.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_the_next_transaction_commits_while_the_acks_before_it_wait_for_the_broker(
    store: Store, settings: ServerSettings, batches: Batches, probe: Probe
) -> None:
    publisher = HeldPublisher()
    metrics = Metrics()
    ingestor = Ingestor(store, settings, publisher, metrics)
    recorder = StatusRecorder(store, settings.ingest, metrics)
    queue: asyncio.Queue[Message] = asyncio.Queue()
    ingest = asyncio.create_task(run_ingest(_messages(queue), ingestor, recorder))
    try:
        first = batches.payload([batches.event(epc=sgtin(1))])
        queue.put_nowait(Message(batches.topic, first, retain=False))

        async def first_ack_sent() -> bool:
            return publisher.sent == ["gw1-b1"]

        await _until(first_ack_sent)
        second = batches.payload([batches.event(epc=sgtin(2))])
        queue.put_nowait(Message(batches.topic, second, retain=False))

        async def second_committed() -> bool:
            return await probe.count(schema.batches) == 2

        # The first Ack has no PUBACK yet; the second batch is committed all the same.
        await _until(second_committed)
        assert publisher.done == []
        # One writer's Acks go out in the order of its commits: the second waits for the
        # first (SQLite has one writer; on PostgreSQL another writer took the second).
        if ingestor.writers == 1:
            assert publisher.sent == ["gw1-b1"]
        publisher.release.set()

        async def both_acked() -> bool:
            return publisher.done == ["gw1-b1", "gw1-b2"]

        await _until(both_acked)
        assert {epc: row["status"] for epc, row in (await probe.units()).items()} == {
            sgtin(1): "in_stock",
            sgtin(2): "in_stock",
        }
    finally:
        ingest.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingest


def test_a_transactions_event_times_are_made_into_text_once() -> None:
    # A SQLite transaction binds each event's time on its ledger row, then (after every
    # ledger row) on its unit's state: the second must find the first's text.
    start = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    times = [start + timedelta(milliseconds=n) for n in range(events_per_write(1))]
    schema.sqlite_utc_text.cache_clear()
    texts = [schema.sqlite_utc_text(at) for at in times]
    assert [schema.sqlite_utc_text(at) for at in times] == texts
    assert schema.sqlite_utc_text.cache_info().hits == len(times)
