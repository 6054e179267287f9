"""The durable outbox on real SQLite files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge.buffer.outbox import Outbox, OutboxError, OutboxFull, OutboxLocked
from tests.edge.support import received_event
from wire.models import Event

GATEWAY = "gw-test"
ROOT = Path(__file__).resolve().parents[2]


def seqs(rows: list[tuple[int, str]]) -> list[int]:
    return [seq for seq, _ in rows]


async def test_storage_is_wal_with_full_sync(tmp_path: Path) -> None:
    async with Outbox.open(tmp_path / "o.db", GATEWAY) as outbox:
        assert await outbox.storage_modes() == ("wal", 2)  # 2 = FULL


async def test_ids_are_unique_increasing_and_carry_gateway_and_epoch(tmp_path: Path) -> None:
    async with Outbox.open(tmp_path / "o.db", GATEWAY) as outbox:
        ids = [outbox.append(received_event) for _ in range(50)]
        assert outbox.pending == 50
        assert await outbox.flush() == 50
        rows = await outbox.next_batch(0, 1000)
    assert len(set(ids)) == 50
    assert all(i.startswith(f"{GATEWAY}:{outbox.epoch}:") for i in ids)
    numbers = [int(i.rsplit(":", 1)[1]) for i in ids]
    assert numbers == list(range(1, 51))
    assert seqs(rows) == numbers
    assert [json.loads(body)["event_id"] for _, body in rows] == ids
    assert len(outbox.epoch) == 16
    int(outbox.epoch, 16)


async def test_flusher_commits_within_interval_without_explicit_flush(tmp_path: Path) -> None:
    async with Outbox.open(tmp_path / "o.db", GATEWAY, commit_interval_ms=50) as outbox:
        committed = asyncio.Event()
        outbox.on_commit(committed.set)
        outbox.append(received_event)
        await asyncio.wait_for(committed.wait(), timeout=5)
        assert outbox.pending == 0
        assert seqs(await outbox.next_batch(0, 10)) == [1]


async def test_uncommitted_events_are_not_handed_out(tmp_path: Path) -> None:
    async with Outbox.open(tmp_path / "o.db", GATEWAY, commit_interval_ms=1000) as outbox:
        outbox.append(received_event)
        assert await outbox.next_batch(0, 10) == []
        assert outbox.depth() == 1
        await outbox.flush()
        assert seqs(await outbox.next_batch(0, 10)) == [1]


async def test_threshold_triggers_early_commit(tmp_path: Path) -> None:
    async with Outbox.open(
        tmp_path / "o.db", GATEWAY, commit_interval_ms=1000, flush_threshold=10
    ) as outbox:
        committed = asyncio.Event()
        outbox.on_commit(committed.set)
        started = time.monotonic()
        for _ in range(10):
            outbox.append(received_event)
        await asyncio.wait_for(committed.wait(), timeout=5)
        # Well before the 1 s interval: the threshold, not the timer, committed them.
        assert time.monotonic() - started < 0.9
        assert outbox.pending == 0


async def test_reopen_keeps_epoch_sequence_and_unacked(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox.open(path, GATEWAY) as outbox:
        for _ in range(10):
            outbox.append(received_event)
        await outbox.flush()
        assert await outbox.ack(outbox.epoch, 1, 4) == 4
        # Ack the highest numbers too: the next number must still not be reused.
        assert await outbox.ack(outbox.epoch, 9, 10) == 2
        epoch = outbox.epoch
    async with Outbox.open(path, GATEWAY) as again:
        assert again.epoch == epoch
        assert again.depth() == 4
        assert seqs(await again.next_batch(0, 100)) == [5, 6, 7, 8]
        new_id = again.append(received_event)
    assert new_id == f"{GATEWAY}:{epoch}:11"


async def test_close_commits_pending(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox.open(path, GATEWAY, commit_interval_ms=1000) as outbox:
        for _ in range(3):
            outbox.append(received_event)
    async with Outbox.open(path, GATEWAY) as again:
        assert seqs(await again.next_batch(0, 10)) == [1, 2, 3]


async def test_cancelled_owner_still_commits(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ready = asyncio.Event()

    async def owner() -> None:
        async with Outbox.open(path, GATEWAY, commit_interval_ms=1000) as outbox:
            for _ in range(5):
                outbox.append(received_event)
            ready.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(owner())
    await asyncio.wait_for(ready.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with Outbox.open(path, GATEWAY) as again:
        assert again.depth() == 5


async def test_ack_deletes_exactly_the_range_of_its_epoch(tmp_path: Path) -> None:
    async with Outbox.open(tmp_path / "o.db", GATEWAY) as outbox:
        for _ in range(10):
            outbox.append(received_event)
        await outbox.flush()
        assert await outbox.ack("0123456789abcdef", 1, 10) == 0  # another epoch
        assert await outbox.ack(outbox.epoch, 3, 5) == 3
        assert await outbox.ack(outbox.epoch, 3, 5) == 0  # a repeated Ack
        assert seqs(await outbox.next_batch(0, 100)) == [1, 2, 6, 7, 8, 9, 10]
        assert outbox.depth() == 7
        assert seqs(await outbox.next_batch(2, 3)) == [6, 7, 8]


async def test_full_refuses_new_keeps_oldest_and_raises_alarm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Outbox.open(tmp_path / "o.db", GATEWAY, max_events=5) as outbox:
        ids = [outbox.append(received_event) for _ in range(5)]
        assert not outbox.full
        with caplog.at_level(logging.ERROR, logger="edge.buffer.outbox"):
            with pytest.raises(OutboxFull):
                outbox.append(received_event)
            with pytest.raises(OutboxFull):
                outbox.append(received_event)
        assert outbox.full
        assert outbox.refused == 2
        alarms = [r for r in caplog.records if "ALARM" in r.getMessage()]
        assert len(alarms) == 1  # logged once, not per refused event
        await outbox.flush()
        rows = await outbox.next_batch(0, 100)
        assert [json.loads(body)["event_id"] for _, body in rows] == ids
        # An Ack makes room: the flag clears and new events are taken again.
        await outbox.ack(outbox.epoch, 1, 1)
        assert not outbox.full
        assert outbox.append(received_event).endswith(":6")


async def test_oldest_age(tmp_path: Path) -> None:
    async with Outbox.open(tmp_path / "o.db", GATEWAY) as outbox:
        assert await outbox.oldest_age_s() is None
        outbox.append(received_event)
        pending_age = await outbox.oldest_age_s()
        assert pending_age is not None
        assert 0 <= pending_age < 5
        await outbox.flush()
        await asyncio.sleep(0.05)
        age = await outbox.oldest_age_s()
        assert age is not None
        assert age >= 0.04


async def test_failing_build_uses_no_number(tmp_path: Path) -> None:
    def broken(event_id: str) -> Event:
        raise ValueError("no event")

    async with Outbox.open(tmp_path / "o.db", GATEWAY) as outbox:
        with pytest.raises(ValueError, match="no event"):
            outbox.append(broken)
        assert outbox.append(received_event).endswith(":1")


async def test_second_opener_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox.open(path, GATEWAY):
        with pytest.raises(OutboxLocked):
            async with Outbox.open(path, GATEWAY):
                pass
    async with Outbox.open(path, GATEWAY):
        pass  # the lock went with the first owner


async def test_other_gateways_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox.open(path, GATEWAY):
        pass
    with pytest.raises(OutboxError, match="belongs to gateway 'gw-test'"):
        async with Outbox.open(path, "gw-other"):
            pass


async def test_not_an_outbox_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match=str(path)):
        async with Outbox.open(path, GATEWAY):
            pass


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from edge.buffer.outbox import Outbox
    from wire.models import Event, now_utc

    def make(event_id):
        return Event(event_id=event_id, event_time=now_utc(), biz_step="receiving",
                     read_point="wh1.dock.1", epc="urn:epc:raw:96.x3034257BF7194E4000001A85",
                     source="llrp")

    async def main():
        async with Outbox.open(sys.argv[1], "gw-test", commit_interval_ms=1000) as outbox:
            for _ in range(40):
                for _ in range(25):
                    outbox.append(make)
                await outbox.flush()
                print(outbox.last_committed_seq, flush=True)
            for _ in range(100):
                outbox.append(make)  # never flushed: may be lost, must not corrupt
            print("waiting", flush=True)
            await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_flushed_events_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    last_flushed = 0
    try:
        for _ in range(41):  # 40 flush lines, then "waiting"
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
            if not line or line.strip() == "waiting":
                break
            last_flushed = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        stderr = (await asyncio.wait_for(proc.stderr.read(), timeout=10)).decode()
        await asyncio.wait_for(proc.wait(), timeout=10)
    assert proc.returncode == -signal.SIGKILL, stderr
    assert last_flushed == 1000, stderr
    async with Outbox.open(path, GATEWAY) as again:
        rows = []
        after = 0
        for _ in range(10):  # bounded paging
            page = await again.next_batch(after, 1000)
            if not page:
                break
            rows.extend(page)
            after = page[-1][0]
        present = set(seqs(rows))
        assert set(range(1, last_flushed + 1)) <= present
        # Nothing half-written: every stored row is a whole, valid event.
        for seq, body in rows:
            assert Event.model_validate_json(body).event_id.endswith(f":{seq}")
        # The numbering goes on after the highest committed number.
        assert again.append(received_event).endswith(f":{max(present) + 1}")
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
