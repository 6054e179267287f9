"""The outbox's depth and bound hold while a commit is on its way to the disk."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.buffer.outbox import Outbox, OutboxFull
from wire.models import Event


def event(event_id: str) -> Event:
    return Event(
        event_id=event_id,
        event_time=datetime(2025, 1, 1, tzinfo=UTC),
        biz_step="receiving",
        read_point="wh1.dock.1",
        epc="urn:epc:id:sgtin:0614141.107346.1",
        source="llrp",
    )


async def test_depth_counts_events_being_committed(tmp_path: Path) -> None:
    async with Outbox.open(tmp_path / "o.db", "gw-1", max_events=1000) as outbox:
        for _ in range(999):
            outbox.append(event)
        flush = asyncio.create_task(outbox.flush())
        for _ in range(100):  # until the commit has taken the pending events
            await asyncio.sleep(0)
            if outbox.pending == 0:
                break
        assert not flush.done(), "the commit is still running on the database thread"
        assert outbox.pending == 0
        assert outbox.depth() == 999
        outbox.append(event)
        with pytest.raises(OutboxFull):
            outbox.append(event)
        assert await flush == 999
        assert outbox.depth() == 1000
