"""The ledger followers give way: to ingest while it is busy (``[history]
defer_to_ingest_s``), and to the instance holding the lease (no wait, no write), on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from server_helpers import GTIN_A, Batches

from server.config.history import HistorySettings
from server.history.follow import LedgerFollower, cursor_position, last_ledger_id
from server.history.rollups import ROLLUPS, RollupSink
from server.ingest.consumer import Ingestor
from server.store.database import Store
from server.store.schema.history import history_cursors

DEFER = HistorySettings(batch_rows=2, defer_to_ingest_s=5.0, poll_interval_s=0.05)
RUN_BOUND_S = 60.0
LOOKS = 1200


async def _receipts(ingestor: Ingestor, batches: Batches, count: int) -> None:
    events = [batches.event(gtin=GTIN_A) for _ in range(count)]
    await ingestor.handle(batches.topic, batches.payload(events))


async def test_a_follower_waits_for_busy_ingest_at_most_defer_s(store: Store) -> None:
    clock = [100.0]
    busy = [True]
    follower = LedgerFollower(
        store, RollupSink(), DEFER, busy=lambda: busy[0], monotonic=lambda: clock[0]
    )

    assert follower.deferring()
    clock[0] += 4.9
    assert follower.deferring()
    clock[0] += 0.1
    assert not follower.deferring()  # waited long enough
    assert follower.catching_up
    clock[0] += 30
    assert not follower.deferring()  # catching up: ingest's being busy no longer counts


async def test_a_wait_starts_again_whenever_ingest_was_idle(store: Store) -> None:
    clock = [100.0]
    busy = [True]
    follower = LedgerFollower(
        store, RollupSink(), DEFER, busy=lambda: busy[0], monotonic=lambda: clock[0]
    )
    assert follower.deferring()
    clock[0] += 4
    busy[0] = False
    assert not follower.deferring()
    busy[0] = True
    clock[0] += 4
    assert follower.deferring()  # 8 s since the first look, 0 since ingest was idle
    assert not follower.catching_up


async def test_without_ingest_or_without_a_wait_a_follower_never_defers(store: Store) -> None:
    assert not LedgerFollower(store, RollupSink(), DEFER).deferring()
    no_wait = DEFER.model_copy(update={"defer_to_ingest_s": 0.0})
    assert not LedgerFollower(store, RollupSink(), no_wait, busy=lambda: True).deferring()


async def _followed(store: Store, follower: LedgerFollower) -> None:
    """Until the follower is at the newest ledger row and no longer catching up."""
    newest = await last_ledger_id(store)
    for _ in range(LOOKS):
        if await cursor_position(store, ROLLUPS) == newest and not follower.catching_up:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the follower did not catch up")


async def test_a_follower_moves_nothing_while_it_waits_and_catches_up_after(
    store: Store, ingestor: Ingestor, batches: Batches
) -> None:
    await _receipts(ingestor, batches, 5)
    clock = [0.0]
    follower = LedgerFollower(
        store, RollupSink(), DEFER, busy=lambda: True, monotonic=lambda: clock[0]
    )
    stop = asyncio.Event()
    running = asyncio.create_task(follower.run(stop))
    for _ in range(5):  # several looks, each finding ingest busy
        await asyncio.sleep(0.1)
    assert await cursor_position(store, ROLLUPS) == 0

    clock[0] = DEFER.defer_to_ingest_s
    await _followed(store, follower)
    assert follower.rows_followed == 5
    # Caught up, it waits for ingest again before following the next rows.
    await _receipts(ingestor, batches, 3)
    for _ in range(5):
        await asyncio.sleep(0.1)
    assert follower.rows_followed == 5
    clock[0] += DEFER.defer_to_ingest_s
    await _followed(store, follower)
    stop.set()
    await running
    assert follower.rows_followed == 8


async def test_an_instance_without_the_lease_neither_waits_nor_writes(
    store: Store, ingestor: Ingestor, batches: Batches
) -> None:
    await _receipts(ingestor, batches, 5)
    holder = LedgerFollower(store, RollupSink(), DEFER, owner="a")
    other = LedgerFollower(store, RollupSink(), DEFER, owner="b")
    assert await holder.step() == 2
    select_cursor = sa.select(history_cursors).where(history_cursors.c.name == ROLLUPS)
    async with store.engine.connect() as conn:
        before = (await conn.execute(select_cursor)).one()

    assert await other.step() == 0  # the lease holds
    if store.dialect == "postgresql":
        # The holder in the middle of a step: its transaction has the cursor row locked.
        async with store.engine.connect() as holding:
            await holding.begin()
            await holding.execute(
                sa.update(history_cursors)
                .where(history_cursors.c.name == ROLLUPS)
                .values(updated_at=history_cursors.c.updated_at)
            )
            async with asyncio.timeout(RUN_BOUND_S / 2):
                assert await other.step() == 0  # looked, skipped, did not wait
            await holding.rollback()

    async with store.engine.connect() as conn:
        after = (await conn.execute(select_cursor)).one()
    assert after == before
    assert await holder.step() == 2
