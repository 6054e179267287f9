"""Helpers the edge tests share: events to put in an outbox, waiting for a condition, an
agent running in the background."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

from edge.agent import EdgeAgent
from wire.models import Ack, AckedBatch, Event, EventBatch, RefusedEvent, now_utc

POLL_S = 0.02
EPC = "urn:epc:raw:96.x3034257BF7194E4000001A85"


def shipped_event(event_id: str) -> Event:
    """A case shipped out through dock door 1, judged with confidence 0.9."""
    return _dock_event(event_id, "shipping", "out", confidence=0.9)


def received_event(event_id: str) -> Event:
    """A case received in through dock door 1."""
    return _dock_event(event_id, "receiving", "in")


def _dock_event(
    event_id: str, biz_step: str, direction: Literal["in", "out"], **more: Any
) -> Event:
    return Event(
        event_id=event_id,
        event_time=now_utc(),
        biz_step=biz_step,
        read_point="wh1.dock.1",
        epc=EPC,
        direction=direction,
        source="llrp",
        **more,
    )


def ack_of(gateway: str, *batches: EventBatch, refused: Sequence[RefusedEvent] = ()) -> bytes:
    """The server's Ack of ``batches`` (refusing ``refused``), as it publishes it."""
    acked = [
        AckedBatch(batch_id=b.batch_id, epoch=b.epoch, seq_first=b.seq_first, seq_last=b.seq_last)
        for b in batches
    ]
    return Ack(gateway=gateway, batches=acked, refused=list(refused)).model_dump_json().encode()


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
