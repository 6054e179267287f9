"""The ingest loop of a server: messages in, checked, grouped, planned and written.

Three stages on one event loop, so the loop's work and the database's overlap: each message
is checked as it arrives (``Ingestor.prepare``; statuses go to the status recorder); the
planner takes the batches that queued up meanwhile as one group (at most
``GROUP_MAX_BATCHES`` batches and ``events_per_plan`` events) and plans it
(``Ingestor.plan``) while the writers commit what was planned before; a writer takes every
group planned and not yet taken (up to ``events_per_write`` events) into one transaction
(``Ingestor.commit_parts``), written in the order they were planned. At most
``PIPELINE_DEPTH`` checked batches and ``PLANS_AHEAD`` planned groups wait; then reading
from MQTT waits too (and the broker holds the rest). A writer begins its next transaction
as soon as one commits: that one's Acks (each waits for the broker's PUBACK) go out
meanwhile, each writer's in the order of its commits. When the writer waited for them,
the database sat idle while the loop checked the messages that arrived in between, and
the next transaction began tens of milliseconds late. For the same reason a batch is
checked, and a step of planning taken, only once the writer's transaction waits on no
answer its SQLite process gives at once (``Store.yield_to_writes``).

Why several writers (``Ingestor.writers``: ``[ingest] writers`` on PostgreSQL, one on
SQLite): gateways keep only a few batches unacknowledged (``[buffer] max_in_flight``, 8 by
default) and their Acks come after the commit, so while one transaction is written the
server soon holds every batch the gateways may send, and nothing else arrives to plan: with
one writer the loop and the database took turns (their CPU added up to one core), whatever
the size of the groups. A second and third transaction of the next groups, written while
the first is, keep PostgreSQL's work and the loop's overlapping (server/README.md, "Ingest
throughput"); ``server.ingest.write_turns`` keeps them from meeting on what they read.
SQLite has one writer, in a process of its own (``server.store.sqlite_process``): its
transactions take half the batches the gateways keep out, so the other half is checked
and planned while one is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from plumbing.mqtt import Message
from server.ingest.consumer import Committed, Ingestor
from server.ingest.gateway_status import StatusRecorder
from server.ingest.intake import Prepared
from server.ingest.transactions import Ahead, Part

log = logging.getLogger(__name__)

PIPELINE_DEPTH = 32
"""Checked batches waiting for the database at most (then reading from MQTT waits)."""
GROUP_MAX_BATCHES = 32
GROUP_MAX_EVENTS = 16_000
"""The events 4 gateways with the edge's default window (8 batches of 500) keep
unacknowledged; transactions and groups are cut from it (``events_per_write``,
``events_per_plan``)."""
PLANS_AHEAD = 8
"""Groups planned and waiting for a writer at most (then the planner waits)."""


def events_per_write(writers: int) -> int:
    """Most events a transaction takes: a share of ``GROUP_MAX_EVENTS``, so that while one
    transaction is written the batches acknowledged before it come back and are checked
    and planned. With 3 writers on PostgreSQL 4,000 events a transaction gave 15.5-16.2k
    events/s, 16,000 gave 12.7-13.7k (same runs). With SQLite's one writer, in its own
    process (``server.store.sqlite_process``), half of it: 19.4-20.9k events/s against
    12.9-17.7k for all of it, alternating runs; in the server's own process the split had
    gained nothing (each row of the writer's waited for the GIL while the loop planned)."""
    return GROUP_MAX_EVENTS // 2 if writers == 1 else GROUP_MAX_EVENTS // (writers + 1)


def events_per_plan(writers: int) -> int:
    """Most events the planner takes into one group: with one writer half a transaction's
    (the first half of the next transaction is planned while the second still arrives),
    with several one transaction's."""
    return events_per_write(writers) // 2 if writers == 1 else events_per_write(writers)


async def run_ingest(
    messages: AsyncIterator[Message], ingestor: Ingestor, recorder: StatusRecorder
) -> None:
    """Take ``messages`` (events and statuses) until cancelled."""
    prepared: asyncio.Queue[Prepared] = asyncio.Queue(PIPELINE_DEPTH)
    planned: asyncio.Queue[Part] = asyncio.Queue(PLANS_AHEAD)
    limit = events_per_write(ingestor.writers)
    async with asyncio.TaskGroup() as group:
        group.create_task(
            _plan(ingestor, prepared, planned, events_per_plan(ingestor.writers)),
            name="server-ingest-plan",
        )
        for number in range(ingestor.writers):
            group.create_task(
                _write(ingestor, planned, limit), name=f"server-ingest-write-{number}"
            )
        async for message in messages:
            await _dispatch(message, ingestor, recorder, prepared)


async def _plan(
    ingestor: Ingestor,
    prepared: asyncio.Queue[Prepared],
    planned: asyncio.Queue[Part],
    limit: int,
) -> None:
    while True:
        group = [await prepared.get()]
        events = group[0].count
        while not prepared.empty() and len(group) < GROUP_MAX_BATCHES and events < limit:
            group.append(prepared.get_nowait())
            events += group[-1].count
        ahead: Ahead | None = None
        try:
            ahead = await ingestor.plan(group)
        except Exception:
            log.exception("unexpected error planning %d batch(es)", len(group))
        await planned.put((group, ahead))


async def _write(ingestor: Ingestor, planned: asyncio.Queue[Part], limit: int) -> None:
    """Take planned groups into transactions; each transaction's Acks go out while the next
    one is written (``_acknowledge``), one transaction's after the other's."""
    acking: asyncio.Task[None] | None = None
    try:
        while True:
            parts = [await planned.get()]
            events = sum(prepared.count for prepared in parts[0][0])
            while not planned.empty() and events < limit:
                parts.append(planned.get_nowait())
                events += sum(prepared.count for prepared in parts[-1][0])
            try:
                committed = await ingestor.commit_parts(parts)
            except Exception:
                log.exception("unexpected error applying %d group(s)", len(parts))
                continue
            if acking is not None:
                await acking
            acking = asyncio.create_task(_acknowledge(ingestor, committed))
    finally:
        if acking is not None and not acking.done():
            # Stopping: an Ack not sent yet is sent again for the batch the edge re-sends.
            acking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acking


async def _acknowledge(ingestor: Ingestor, committed: Committed) -> None:
    try:
        await ingestor.acknowledge(committed)
    except Exception:
        log.exception("unexpected error acknowledging %d batch(es)", len(committed.group))


async def _dispatch(
    message: Message,
    ingestor: Ingestor,
    recorder: StatusRecorder,
    prepared: asyncio.Queue[Prepared],
) -> None:
    try:
        if message.topic.endswith("/events"):
            await ingestor.yield_to_writes()
            checked = await ingestor.prepare(message.topic, message.payload)
            if isinstance(checked, Prepared):
                await prepared.put(checked)
        elif message.topic.endswith("/status"):
            await recorder.handle(message.topic, message.payload)
        else:
            log.debug("ignoring message on %s", message.topic)
    except Exception:
        log.exception("unexpected error handling a message on %s", message.topic[:200])
