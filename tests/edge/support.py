"""Helpers the edge tests share: events to put in an outbox, waiting for a condition, an
agent running in the background."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from edge.agent import EdgeAgent
from wire.models import Event, now_utc

POLL_S = 0.02
EPC = "urn:epc:raw:96.x3034257BF7194E4000001A85"


def shipped_event(event_id: str) -> Event:
    """A case shipped out through dock door 1, judged with confidence 0.9."""
    return Event(
        event_id=event_id,
        event_time=now_utc(),
        biz_step="shipping",
        read_point="wh1.dock.1",
        epc=EPC,
        direction="out",
        confidence=0.9,
        source="llrp",
    )


def received_event(event_id: str) -> Event:
    """A case received in through dock door 1."""
    return Event(
        event_id=event_id,
        event_time=now_utc(),
        biz_step="receiving",
        read_point="wh1.dock.1",
        epc=EPC,
        direction="in",
        source="llrp",
    )


async def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true, polling every ``POLL_S``.

    Raises:
        AssertionError: not true within ``timeout`` seconds.
    """
    for _ in range(int(timeout / POLL_S)):  # bounded in count and so in time
        if check():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError("condition not reached in time")


@contextlib.asynccontextmanager
async def running(agent: EdgeAgent) -> AsyncIterator[asyncio.Event]:
    """``agent`` running until the block ends (or the event it yields is set)."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="agent")
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
