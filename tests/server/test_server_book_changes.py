"""Checkpoints hold only the books that changed, are kept in transactions of their own
after the rollups', and the demand per period is summed in SQL
(``server.reports.book_checkpoints``, ``server.reports.book_reads``,
``server.history.rollups``), on SQLite and PostgreSQL.

The ledger of ``test_server_book_checkpoints`` (late rows, transfers between sites, moves
inside a site). A book has a row at a boundary exactly when a row that moves value touched
it since the boundary before; the books read at every boundary equal a replay of the
ledger up to it; a step of the books that fails leaves them and their position as they
were while the rollups go on, and the next step catches up; the quantity shipped per item
and period equals the sum of the rows by Python's own arithmetic, for periods that start
at midnight and in the middle of a day.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import StoreError
from server.history import rollups
from server.history.check import history_report, rebuild_history, reset_rollups
from server.history.follow import LedgerFollower, LedgerRow, position_on, read_rows
from server.history.rollups import ROLLUPS, RollupSink
from server.reports.book_checkpoints import FOREVER, marks, position, stored_books
from server.reports.book_reads import shipped_per_period
from server.reports.book_state import STEP, boundary_at_or_before, dump_book
from server.reports.valuation import load_books
from server.store.database import Store
from server.store.schema.core import ledger
from server.store.schema.history import book_checkpoints, history_cursors
from server.store.sites import site_of
from tests.server.test_server_book_checkpoints import (
    STEPS,
    T0,
    _all_reports,
    _fill,
    _follow_all,
    _kept,
)


async def _ledger(store: Store) -> list[tuple[datetime, int, str | None, str | None]]:
    async with store.read("reading the ledger") as conn:
        row = ledger.c
        return [
            (at, int(item), source, target)
            for at, item, source, target in await conn.execute(
                sa.select(row.event_time, row.item_id, row.from_location, row.to_location)
            )
        ]


@pytest.mark.parametrize("follow", [False, True])
async def test_a_checkpoint_holds_the_books_changed_since_the_one_before(
    store: Store, follow: bool
) -> None:
    await _fill(store, 7)
    if follow:
        await _follow_all(LedgerFollower(store, RollupSink(), STEPS))
    else:
        await rebuild_history(store)
    async with store.read("reading checkpoints") as conn:
        kept = await marks(conn)
        cp = book_checkpoints.c
        rows = {
            (int(item), str(site), boundary)
            for item, site, boundary in await conn.execute(
                sa.select(cp.item_id, cp.site, cp.boundary)
            )
        }
    expected: set[tuple[int, str, datetime]] = set()
    for at, item, source, target in await _ledger(store):
        sites = {site_of(place) for place in (source, target) if place is not None}
        if len(sites) == 1 and source is not None and target is not None:
            continue  # a move inside a site moves no value
        boundary = boundary_at_or_before(at) + STEP
        if boundary <= kept[-1]:
            expected.update((item, site, boundary) for site in sites)
    assert rows == expected
    assert len(rows) < len(kept) * len({(item, site) for item, site, _ in rows})
    async with store.read("comparing with replays") as conn:
        for boundary in kept:
            read = await stored_books(conn, boundary, None)
            replayed = await load_books(conn, FOREVER, boundary)
            assert {key: dump_book(book) for key, book in read.items()} == {
                key: dump_book(book) for key, book in replayed.books.items()
            }


@pytest.mark.parametrize("start", [T0.replace(hour=0), T0 + timedelta(hours=7, minutes=13)])
@pytest.mark.parametrize("days", [1, 7])
async def test_shipped_per_period_sums_the_rows_by_day_as_python_does(
    store: Store, start: datetime, days: int
) -> None:
    await _fill(store, 8)
    step = timedelta(days=days)
    until = start + timedelta(days=9, hours=5)
    expected: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    of_two: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    async with store.read("summing") as conn:
        row = ledger.c
        for at, item, source, quantity in await conn.execute(
            sa.select(row.event_time, row.item_id, row.from_location, row.quantity).where(
                row.kind == "shipment", row.to_location.is_(None)
            )
        ):
            if not start <= at < until:
                continue
            day = at.replace(hour=0, minute=0, second=0, microsecond=0)
            if site_of(source) != "wh3":
                expected[item][int((day - start) / step)] += quantity
            if item in (1, 2):
                of_two[item][int((day - start) / step)] += quantity
        shipped = await shipped_per_period(
            conn, start, until, step, None, [frozenset({"wh1", "wh2"})]
        )
        everywhere = await shipped_per_period(conn, start, until, step, [1, 2], [])
    assert expected
    assert shipped == expected
    assert everywhere == of_two


class _FailingBooks(RollupSink):
    """Writes the books' step and then fails, as a crash half way through it would."""

    async def _follow_books(
        self, conn: AsyncConnection, done: int, target: int, fetched: Sequence[LedgerRow]
    ) -> None:
        await super()._follow_books(conn, done, target, fetched)
        raise StoreError("disk full (test)")


async def _positions(store: Store) -> tuple[int, int]:
    async with store.read("positions") as conn:
        rollups = await conn.scalar(
            sa.select(history_cursors.c.position).where(history_cursors.c.name == ROLLUPS)
        )
        return int(rollups or 0), await position(conn)


async def _caught_up(store: Store) -> int:
    """Asserts that the books stand where the rollups do, agree with the ledger and are what
    a rebuild makes of it; returns their position."""
    rollups_at, books_at = await _positions(store)
    assert rollups_at == books_at
    assert (await history_report(store)).lines == []
    followed = await _kept(store)
    await rebuild_history(store)
    assert await _kept(store) == followed
    return books_at


async def test_the_books_follow_in_their_own_transactions(store: Store) -> None:
    await _fill(store, 9)
    replayed = await _all_reports(store)
    follower = LedgerFollower(store, RollupSink(), STEPS, owner="a")
    for _ in range(6):
        await follower.step()
    rollups, books = await _positions(store)
    assert rollups == books > 0
    before = await _kept(store)
    failing = LedgerFollower(store, _FailingBooks(), STEPS, owner="a")
    for _ in range(3):
        with pytest.raises(StoreError):
            await failing.step()
        assert await _kept(store) == before
    later, books_after = await _positions(store)
    assert later > rollups  # the rollups went on without them
    assert books_after == books
    assert await _all_reports(store) == replayed
    await _follow_all(follower)
    await _caught_up(store)
    await reset_rollups(store)
    assert await _positions(store) == (0, 0)


async def test_books_that_kept_pace_take_the_step_s_rows_without_reading_them(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(store, 9)
    reads: list[int] = []

    async def counted(conn: AsyncConnection, after: int, limit: int) -> list[LedgerRow]:
        reads.append(after)
        return await read_rows(conn, after, limit)

    monkeypatch.setattr(rollups, "read_rows", counted)
    follower = LedgerFollower(store, RollupSink(), STEPS, owner="a")
    for _ in range(3):
        assert await follower.step() > 0
    rollups_at, books_at = await _positions(store)
    assert rollups_at == books_at > 0
    assert reads == []
    # Books left behind (their transaction failed) read the ledger to catch up.
    with pytest.raises(StoreError):
        await LedgerFollower(store, _FailingBooks(), STEPS, owner="a").step()
    await _follow_all(follower)
    assert reads
    await _caught_up(store)


async def test_books_whose_rows_were_overtaken_after_the_read_read_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rebuild-history`` between the books' read of the ledger and their transaction:
    the rows read are not added on top of the rebuilt books."""
    await _fill(store, 9)
    overtaken: list[int] = []

    async def read_then_rebuild(conn: AsyncConnection, name: str) -> int:
        # The books' read of the rollups' position, before their transaction: whether they
        # then read the rows or take the step's, a rebuild comes between.
        target = await position_on(conn, name)
        if not overtaken:
            overtaken.append(await rebuild_history(store))
        return target

    monkeypatch.setattr(rollups, "position_on", read_then_rebuild)
    follower = LedgerFollower(store, RollupSink(), STEPS, owner="a")
    await _follow_all(follower)
    assert overtaken
    assert await _caught_up(store) == overtaken[0]
