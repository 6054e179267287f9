"""The ingest loop of a server: messages in, checked, grouped, planned and written.

Three stages on one event loop, so the loop's work and the database's overlap: each message
is checked as it arrives (``Ingestor.prepare``; statuses go to the status recorder); the
planner takes the batches that queued up meanwhile as one group (at most
``GROUP_MAX_BATCHES`` batches and ``GROUP_MAX_EVENTS`` events, one transaction) and plans
it (``Ingestor.plan``) while the writer commits the group before (``Ingestor.apply``). At
most ``PIPELINE_DEPTH`` checked batches wait; then reading from MQTT waits too (and the
broker holds the rest).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from plumbing.mqtt import Message
from server.ingest.consumer import Ingestor
from server.ingest.gateway_status import StatusRecorder
from server.ingest.intake import Prepared
from server.ingest.transactions import Ahead

log = logging.getLogger(__name__)

PIPELINE_DEPTH = 32
"""Checked batches waiting for the database at most (then reading from MQTT waits)."""
GROUP_MAX_BATCHES = 32
GROUP_MAX_EVENTS = 16_000
"""Most batches and events applied in one transaction."""

Planned = tuple[list[Prepared], Ahead | None]


async def run_ingest(
    messages: AsyncIterator[Message], ingestor: Ingestor, recorder: StatusRecorder
) -> None:
    """Take ``messages`` (events and statuses) until cancelled."""
    prepared: asyncio.Queue[Prepared] = asyncio.Queue(PIPELINE_DEPTH)
    planned: asyncio.Queue[Planned] = asyncio.Queue(1)
    async with asyncio.TaskGroup() as group:
        group.create_task(_plan(ingestor, prepared, planned), name="server-ingest-plan")
        group.create_task(_write(ingestor, planned), name="server-ingest-write")
        async for message in messages:
            await _dispatch(message, ingestor, recorder, prepared)


async def _plan(
    ingestor: Ingestor, prepared: asyncio.Queue[Prepared], planned: asyncio.Queue[Planned]
) -> None:
    while True:
        group = [await prepared.get()]
        events = group[0].count
        while not prepared.empty() and len(group) < GROUP_MAX_BATCHES and events < GROUP_MAX_EVENTS:
            group.append(prepared.get_nowait())
            events += group[-1].count
        ahead: Ahead | None = None
        try:
            ahead = await ingestor.plan(group)
        except Exception:
            log.exception("unexpected error planning %d batch(es)", len(group))
        await planned.put((group, ahead))
        # One group planned ahead at most: the next is taken once the writer has this one,
        # so it holds what arrived meanwhile and its plan is as fresh as can be.
        await planned.join()


async def _write(ingestor: Ingestor, planned: asyncio.Queue[Planned]) -> None:
    while True:
        group, ahead = await planned.get()
        planned.task_done()
        try:
            await ingestor.apply(group, ahead)
        except Exception:
            log.exception("unexpected error applying %d batch(es)", len(group))


async def _dispatch(
    message: Message,
    ingestor: Ingestor,
    recorder: StatusRecorder,
    prepared: asyncio.Queue[Prepared],
) -> None:
    try:
        if message.topic.endswith("/events"):
            checked = await ingestor.prepare(message.topic, message.payload)
            if isinstance(checked, Prepared):
                await prepared.put(checked)
        elif message.topic.endswith("/status"):
            await recorder.handle(message.topic, message.payload)
        else:
            log.debug("ignoring message on %s", message.topic)
    except Exception:
        log.exception("unexpected error handling a message on %s", message.topic[:200])
