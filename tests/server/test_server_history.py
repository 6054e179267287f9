"""The ledger follower and the SQL rollups, on SQLite and PostgreSQL.

Rollups are compared with a brute-force sum of the ledger written here (not the follower's
code), and with ``check-history`` (SQL written apart from both).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from server_helpers import BASE_TIME, GTIN_A, GTIN_B, Batches, Probe, sgtin
from sqlalchemy.ext.asyncio import AsyncConnection

from server.app import check_history_command, rebuild_history_command
from server.config.history import HistorySettings
from server.config.settings import ServerSettings
from server.errors import StoreError
from server.history.check import history_report, rebuild_history
from server.history.follow import LedgerFollower, LedgerRow, cursor_position, last_ledger_id
from server.history.rollups import ROLLUPS, RollupRows, RollupSink
from server.ingest.consumer import Ingestor
from server.store.database import Store
from server.store.schema import core as schema
from server.store.schema.history import (
    history_cursors,
    history_movements,
    history_site_movements,
    history_stock_daily,
)

SMALL_STEPS = HistorySettings(batch_rows=7, gap_settle_s=0.0)
GAP_WAIT_STEPS = 600


async def _fill(ingestor: Ingestor, batches: Batches, rounds: int = 3) -> None:
    """Receipts and shipments of units and quantities at two read points, spread over
    several hours and two days, some arriving late (older event times than earlier ones)."""
    for round_no in range(rounds):
        events = []
        for n in range(6):
            at = BASE_TIME + timedelta(hours=round_no * 9 + n, minutes=7 * n)
            events.append(batches.event(epc=sgtin(round_no * 10 + n), at=at))
            if n % 2:
                events.append(
                    batches.event(
                        epc=sgtin(round_no * 10 + n), direction="out", at=at + timedelta(minutes=30)
                    )
                )
            events.append(
                batches.event(
                    gtin=GTIN_B, qty=n + 1, read_point="wh1.dock.2", at=at - timedelta(days=1)
                )
            )
        await ingestor.handle(batches.topic, batches.payload(events))


def _site(location: str) -> str:
    return location.split(".")[0]


async def _expected(probe: Probe) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """Brute force over the ledger: (key -> count, quantity) as flat counters."""
    movements: Counter[tuple[Any, ...]] = Counter()
    stock: Counter[tuple[Any, ...]] = Counter()
    for row in await probe.ledger():
        when: datetime = row["event_time"]
        hour = when.strftime("%Y-%m-%d %H")
        day = when.strftime("%Y-%m-%d")
        for place, side in ((row["from_location"], "out"), (row["to_location"], "in")):
            if place is None:
                continue
            for period, bucket in (("hour", hour), ("day", day)):
                key = (
                    period,
                    bucket,
                    place,
                    side,
                    row["read_point"] or "",
                    row["item_id"],
                    row["kind"],
                )
                movements[(*key, "count")] += 1
                movements[(*key, "quantity")] += row["quantity"]
        sites = [
            None if place is None else _site(place)
            for place in (row["from_location"], row["to_location"])
        ]
        if sites[0] != sites[1]:
            if sites[1] is not None:
                stock[(sites[1], row["item_id"], day, "in")] += row["quantity"]
            if sites[0] is not None:
                stock[(sites[0], row["item_id"], day, "out")] += row["quantity"]
    return +movements, +stock


async def _stored(probe: Probe) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    movements: Counter[tuple[Any, ...]] = Counter()
    for row in await probe.rows(history_movements, history_movements.c.bucket):
        fmt = "%Y-%m-%d %H" if row["period"] == "hour" else "%Y-%m-%d"
        key = (
            row["period"],
            row["bucket"].strftime(fmt),
            row["location"],
            row["side"],
            row["read_point"],
            row["item_id"],
            row["kind"],
        )
        assert row["site"] == _site(row["location"])
        movements[(*key, "count")] += row["count"]
        movements[(*key, "quantity")] += row["quantity"]
    stock: Counter[tuple[Any, ...]] = Counter()
    for row in await probe.rows(history_stock_daily, history_stock_daily.c.day):
        day = row["day"].strftime("%Y-%m-%d")
        stock[(row["site"], row["item_id"], day, "in")] += row["quantity_in"]
        stock[(row["site"], row["item_id"], day, "out")] += row["quantity_out"]
    return +movements, +stock


async def _follow_all(follower: LedgerFollower, bound: int = 1000) -> int:
    total = 0
    for _ in range(bound):
        moved = await follower.step()
        if not moved:
            return total
        total += moved
    raise AssertionError("the follower did not catch up")


async def test_rollups_equal_a_brute_force_sum_of_the_ledger(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    await _fill(ingestor, batches)
    follower = LedgerFollower(store, RollupSink(), SMALL_STEPS)
    followed = await _follow_all(follower)

    rows = await probe.ledger()
    assert followed == len(rows) > 20
    assert await cursor_position(store, ROLLUPS) == rows[-1]["id"]
    assert await _stored(probe) == await _expected(probe)
    report = await history_report(store)
    assert report.lines == []
    assert report.position == report.newest == rows[-1]["id"]


async def test_a_follower_resumes_where_the_last_one_stopped(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    """A server that stops between steps (here: the follower object is dropped, its lease
    left to run out) is followed by another that neither misses nor repeats a row."""
    await _fill(ingestor, batches, rounds=2)
    clock = [BASE_TIME]
    first = LedgerFollower(store, RollupSink(), SMALL_STEPS, owner="a", clock=lambda: clock[0])
    assert await first.step() == 7
    assert await first.step() == 7
    # Another instance waits while the lease holds...
    second = LedgerFollower(store, RollupSink(), SMALL_STEPS, owner="b", clock=lambda: clock[0])
    assert await second.step() == 0
    # ...more rows arrive, and the first instance dies without releasing its lease.
    await _fill(ingestor, batches, rounds=1)
    clock[0] += timedelta(seconds=SMALL_STEPS.lease_s + 1)
    await _follow_all(second)
    assert await _stored(probe) == await _expected(probe)
    assert (await history_report(store)).lines == []
    # The old holder wakes up: it may not move anything any more.
    assert await first.step() == 0


class _FailingSink(RollupSink):
    """Writes its rollups and then fails, as a crash in the middle of a step would."""

    async def apply(self, conn: AsyncConnection, prepared: RollupRows) -> None:
        await super().apply(conn, prepared)
        raise StoreError("disk full (test)")


async def test_a_step_that_fails_half_way_leaves_nothing_behind(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    await _fill(ingestor, batches, rounds=1)
    follower = LedgerFollower(store, RollupSink(), SMALL_STEPS, owner="a")
    await follower.step()
    before = await _stored(probe)
    failing = LedgerFollower(store, _FailingSink(), SMALL_STEPS, owner="a")
    with pytest.raises(StoreError):
        await failing.step()
    assert await _stored(probe) == before
    await _follow_all(follower)
    assert await _stored(probe) == await _expected(probe)


async def test_check_history_finds_a_difference_and_rebuild_mends_it(
    store: Store,
    settings: ServerSettings,
    ingestor: Ingestor,
    batches: Batches,
    probe: Probe,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _fill(ingestor, batches, rounds=1)
    follower = LedgerFollower(store, RollupSink(), SMALL_STEPS)
    await _follow_all(follower)
    await follower.release()  # as a server does when it stops
    assert await check_history_command(settings) == 0
    assert "history agrees with the ledger" in capsys.readouterr().out
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(history_movements)
            .where(history_movements.c.period == "day", history_movements.c.side == "in")
            .values(count=history_movements.c.count + 1)
        )
        await conn.execute(sa.delete(history_stock_daily))
        await conn.execute(
            sa.update(history_site_movements)
            .where(history_site_movements.c.period == "hour")
            .values(quantity=history_site_movements.c.quantity + 1)
        )
    report = await history_report(store)
    # The coarser rollups are checked against the finer ones: the day buckets planted in the
    # rollup by item, and every hour planted in the rollup per site.
    assert any(line.startswith("day ") and "by item" in line for line in report.places)
    assert any(line.startswith("hour ") and "per site" in line for line in report.places)
    planted = await probe.count(history_movements)
    assert report.movements
    assert len(report.movements) < planted
    assert all(line.startswith("day ") and " in" in line for line in report.movements)
    assert report.stock
    assert all("rollup in 0 out 0" in line for line in report.stock)
    assert await check_history_command(settings) == 1
    assert "bucket(s) disagree with the ledger" in capsys.readouterr().out

    assert await rebuild_history_command(settings) == 0
    assert (await history_report(store)).lines == []
    assert await _stored(probe) == await _expected(probe)
    assert await probe.count(history_site_movements) > 0


async def test_rebuild_beside_a_running_follower_leaves_it_nothing_to_redo(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    await _fill(ingestor, batches, rounds=1)
    holder = LedgerFollower(store, RollupSink(), SMALL_STEPS, owner="server")
    assert await holder.step() == 7  # holds the lease, part way
    assert await rebuild_history(store) == await last_ledger_id(store)
    assert await _stored(probe) == await _expected(probe)
    await _fill(ingestor, batches, rounds=1)
    await _follow_all(holder)  # goes on from where the rebuild left the position
    assert await _stored(probe) == await _expected(probe)
    assert (await history_report(store)).lines == []


class _RebuiltWhileReading(LedgerFollower):
    """A follower whose first read is overtaken: ``rebuild-history`` runs right after it,
    before the step's write transaction (the rows read are then summed already)."""

    overtaken = False

    async def _settled(self, conn: AsyncConnection, position: int) -> list[LedgerRow]:
        rows = await super()._settled(conn, position)
        if not self.overtaken and rows:
            self.overtaken = True
            await rebuild_history(self._store)
        return rows


async def test_a_step_overtaken_after_its_read_reads_again_and_counts_nothing_twice(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    await _fill(ingestor, batches, rounds=1)
    holder = _RebuiltWhileReading(store, RollupSink(), SMALL_STEPS, owner="server")
    # It read 7 rows after position 0, but the rebuild moved the position to the newest
    # row: the step reads again from there and finds nothing to add.
    assert await holder.step() == 0
    assert holder.overtaken
    assert await cursor_position(store, ROLLUPS) == await last_ledger_id(store)
    assert await _stored(probe) == await _expected(probe)
    await _fill(ingestor, batches, rounds=1)
    await _follow_all(holder)
    assert await _stored(probe) == await _expected(probe)
    assert (await history_report(store)).lines == []


class _WriterWatch(RollupSink):
    """Notes, whenever the follower prepares its rows, whether another connection could
    take SQLite's write lock at that moment (it cannot while a write transaction is open)."""

    def __init__(self, database: Path) -> None:
        super().__init__()
        self._database = database
        self.writer_free: list[bool] = []

    def prepare(self, rows: Sequence[LedgerRow]) -> RollupRows:
        other = sqlite3.connect(self._database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            self.writer_free.append(True)
        except sqlite3.OperationalError:
            self.writer_free.append(False)
        finally:
            other.close()
        return super().prepare(rows)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_step_reads_and_sums_its_rows_before_it_takes_sqlites_writer(
    store: Store, settings: ServerSettings, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    """Ingest waits for the one writer: a step holds it only to write the sums."""
    await _fill(ingestor, batches, rounds=1)
    sink = _WriterWatch(Path(settings.database.url.removeprefix("sqlite+aiosqlite:///")))
    assert await _follow_all(LedgerFollower(store, sink, SMALL_STEPS)) > 0
    assert len(sink.writer_free) >= 3
    assert all(sink.writer_free)
    assert await _stored(probe) == await _expected(probe)


@pytest.mark.parametrize("statement", ["update", "delete"])
async def test_the_ledger_refuses_updates_and_deletes(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe, statement: str
) -> None:
    await ingestor.handle(batches.topic, batches.payload([batches.event(gtin=GTIN_A, qty=3)]))
    before = await probe.ledger()
    change = (
        sa.update(schema.ledger).values(quantity=30)
        if statement == "update"
        else sa.delete(schema.ledger)
    )
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        async with store.engine.begin() as conn:
            await conn.execute(change)
    assert await probe.ledger() == before


async def test_postgresql_ids_committed_out_of_order_are_waited_for(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    """An id taken by a transaction still open is not stepped over; one rolled back is,
    once every transaction that could hold it has ended."""
    if store.dialect != "postgresql":
        # SQLite has one writer and ids follow commit order: no such gap can exist.
        await ingestor.handle(batches.topic, batches.payload([batches.event(gtin=GTIN_A)]))
        follower = LedgerFollower(store, RollupSink(), SMALL_STEPS)
        assert await _follow_all(follower) == 1
        return
    await ingestor.handle(batches.topic, batches.payload([batches.event(gtin=GTIN_A)]))
    follower = LedgerFollower(store, RollupSink(), SMALL_STEPS)
    assert await _follow_all(follower) == 1
    item_id = (await probe.ledger())[0]["item_id"]
    row = {
        "event_time": BASE_TIME,
        "recorded_at": BASE_TIME,
        "item_id": item_id,
        "to_location": "wh1.receiving",
        "quantity": 5,
        "kind": "receipt",
        "actor": "test",
    }
    async with store.engine.connect() as open_conn:
        open_tx = await open_conn.begin()
        await open_conn.execute(schema.ledger.insert().values(**row))  # takes the next id
        async with store.engine.begin() as conn:
            await conn.execute(schema.ledger.insert().values(**{**row, "quantity": 7}))
        for _ in range(3):
            assert await follower.step() == 0  # waits for the open transaction's id
        await open_tx.commit()
    assert await _follow_all(follower) == 2

    async with store.engine.connect() as doomed:
        doomed_tx = await doomed.begin()
        await doomed.execute(schema.ledger.insert().values(**row))
        async with store.engine.begin() as conn:
            await conn.execute(schema.ledger.insert().values(**{**row, "quantity": 11}))
        assert await follower.step() == 0
        await doomed_tx.rollback()
    # settle_s is 0: the horizon is noted at once; it is passed once every transaction of
    # the cluster that was running then has ended (other databases' too: bounded wait).
    moved = 0
    for _ in range(GAP_WAIT_STEPS):
        moved += await follower.step()
        if moved:
            break
        await asyncio.sleep(0.1)
    assert moved == 1
    assert await _stored(probe) == await _expected(probe)
    async with store.engine.connect() as conn:
        position = await conn.scalar(sa.select(history_cursors.c.position))
    assert position == (await probe.ledger())[-1]["id"]
