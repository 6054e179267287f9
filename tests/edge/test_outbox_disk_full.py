"""A full disk under the outbox: loud, bounded in memory, nothing committed lost, recovered.

The outbox file is capped (``max_file_mb``, SQLite's ``max_page_count``), so commits fail
with SQLite's real "database or disk is full", the same error a full disk gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from edge.buffer.outbox import Outbox, OutboxError, OutboxFull
from edge.config import BufferSettings, EdgeSettings
from edge.health import IssueBoard
from edge.monitor import OUTBOX_UNWRITABLE, HealthMonitor
from tests.edge.support import received_event
from wire.models import Event

GATEWAY = "gw-test"
MAX_UNCOMMITTED = 300


def make_event(event_id: str) -> Event:
    # A bigger row fills the capped file sooner.
    return received_event(event_id).model_copy(update={"group": "x" * 200})


async def test_a_full_disk_holds_a_bounded_number_of_events_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    accepted: list[str] = []
    refused = 0
    async with Outbox.open(
        path, GATEWAY, commit_interval_ms=20, max_uncommitted=MAX_UNCOMMITTED, max_file_mb=1
    ) as outbox:
        # Fill until commits fail and then until appends are refused.
        for _ in range(100_000):
            try:
                accepted.append(outbox.append(make_event))
            except OutboxFull:
                refused += 1
                if refused >= 50:
                    break
            if len(accepted) % 200 == 0:
                with contextlib.suppress(OutboxError):
                    await outbox.flush()
        assert outbox.commit_error is not None
        assert "full" in outbox.commit_error
        assert outbox.full
        assert outbox.uncommitted() == MAX_UNCOMMITTED  # memory bounded
        assert refused == 50

        board = IssueBoard()
        edge = EdgeSettings(
            gateway={"id": GATEWAY, "site": "wh1"}, buffer={"max_uncommitted": MAX_UNCOMMITTED}
        )
        monitor = HealthMonitor(edge, board)
        monitor.evaluate_outbox(
            outbox.depth(), outbox.full, None, outbox.commit_error, outbox.uncommitted()
        )
        [issue] = [i for i in board.issues(0.0) if i.kind == OUTBOX_UNWRITABLE]
        assert issue.severity == "critical"

        # The server acknowledges the oldest half: the file has room again.
        committed = outbox.last_committed_seq
        await outbox.ack(outbox.epoch, 1, committed // 2)
        async with asyncio.timeout(30):
            while outbox.commit_error is not None or outbox.uncommitted():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert not outbox.full
        monitor.evaluate_outbox(outbox.depth(), outbox.full, None, outbox.commit_error, 0)
        assert not [i for i in board.issues(0.0) if i.kind == OUTBOX_UNWRITABLE]
        depth = outbox.depth()

    # Every accepted event is either acknowledged or on the disk, in order, once.
    with sqlite3.connect(path) as db:
        held = [row[0] for row in db.execute("SELECT seq FROM events ORDER BY seq")]
    expected = [int(event_id.rsplit(":", 1)[1]) for event_id in accepted]
    assert held == [seq for seq in expected if seq > committed // 2]
    assert len(held) == depth


def test_the_bound_of_memory_is_validated() -> None:
    with pytest.raises(ValueError, match="max_uncommitted"):
        BufferSettings(max_uncommitted=0)
