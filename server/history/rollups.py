"""The SQL rollups sink: ledger rows summed into hourly and daily buckets, and daily stock.

What a ledger row adds (see ``server.store.schema.history`` for the tables):

- to ``history_movements``, for each period (hour, day) and each side it has: one to the
  ``out`` side of ``from_location`` and one to the ``in`` side of ``to_location``, keyed by
  bucket start (UTC), location, read point, item and kind: ``count`` 1, ``quantity``;
- to ``history_place_movements``, the same without the item (``place_sums``), and to
  ``history_site_movements`` without the location and read point either (``site_sums``);
- to ``history_stock_daily``, when it crosses a site boundary: ``quantity_in`` at the site
  of ``to_location`` and ``quantity_out`` at the site of ``from_location`` on its UTC day;
- and, after each step, in transactions of their own, to the valuation books kept at
  checkpoints (``server.reports.book_checkpoints``) and the stock by location kept at
  snapshots (``server.reports.location_snapshots``): ``RollupSink.after``.

Buckets follow the row's event time, not when it was recorded, so a late event lands in the
hour it happened. The sums are added with ``INSERT ... ON CONFLICT DO UPDATE`` in the
follower's transaction (``server.history.follow``), so every row counts exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from plumbing.records import record
from server.history.follow import LedgerRow, position_on, read_rows
from server.reports import book_checkpoints, location_snapshots
from server.reports.book_checkpoints import REPAIR_ITEMS
from server.store.database import Store
from server.store.dialect import execute_many, upsert
from server.store.schema.history import (
    NO_READ_POINT,
    Period,
    Side,
    history_movements,
    history_place_movements,
    history_site_movements,
    history_stock_daily,
)
from server.store.sites import site_of

HOUR: Final = timedelta(hours=1)
ROLLUPS: Final = "rollups"
"""The rollups follower's cursor name."""
BOOK_ROWS: Final = 5000
"""Ledger rows a transaction of the valuation books takes at most."""

MovementKey = tuple[Period, datetime, str, Side, str, int, str]
"""(period, bucket, location, side, read point, item id, kind)."""
PlaceKey = tuple[Period, datetime, str, Side, str, str]
"""(period, bucket, location, side, read point, kind)."""
SiteKey = tuple[Period, datetime, str, Side, str]
"""(period, bucket, site, side, kind)."""
StockKey = tuple[str, int, datetime]
"""(site, item id, day)."""


def bucket_start(moment: datetime, period: Period) -> datetime:
    """The UTC start of the hour or day ``moment`` falls in."""
    if period == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


class _Buckets:
    """The hour and day buckets of moments that come in about time order (a step's rows):
    the last hour is kept, so a moment in it costs two comparisons instead of the two
    ``replace`` calls of ``bucket_start``, which were the dearest part of a step's sums."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[datetime, datetime, datetime] | None = None
        """The last hour's (start, end, day)."""

    def of(self, moment: datetime) -> tuple[datetime, datetime]:
        """(hour bucket, day bucket) of ``moment``: ``bucket_start`` of each."""
        last = self._last
        if last is None or not last[0] <= moment < last[1]:
            hour = bucket_start(moment, "hour")
            last = self._last = (hour, hour + HOUR, hour.replace(hour=0))
        return last[0], last[2]


def movement_sums(rows: Sequence[LedgerRow]) -> dict[MovementKey, list[int]]:
    """``[count, quantity]`` per movement key over ``rows``."""
    sums: dict[MovementKey, list[int]] = defaultdict(lambda: [0, 0])
    buckets = _Buckets()
    for row in rows:
        read_point = row.read_point or NO_READ_POINT
        sides: list[tuple[str, Side]] = []
        if row.from_location is not None:
            sides.append((row.from_location, "out"))
        if row.to_location is not None:
            sides.append((row.to_location, "in"))
        hour, day = buckets.of(row.event_time)
        periods: tuple[tuple[Period, datetime], ...] = (("hour", hour), ("day", day))
        for period, bucket in periods:
            for location, side in sides:
                figures = sums[(period, bucket, location, side, read_point, row.item_id, row.kind)]
                figures[0] += 1
                figures[1] += row.quantity
    return sums


def place_sums(movements: dict[MovementKey, list[int]]) -> dict[PlaceKey, list[int]]:
    """``movement_sums`` added up over the items."""
    sums: dict[PlaceKey, list[int]] = defaultdict(lambda: [0, 0])
    for (period, bucket, location, side, read_point, _, kind), (
        count,
        quantity,
    ) in movements.items():
        figures = sums[(period, bucket, location, side, read_point, kind)]
        figures[0] += count
        figures[1] += quantity
    return sums


def site_sums(places: dict[PlaceKey, list[int]]) -> dict[SiteKey, list[int]]:
    """``place_sums`` added up over each site's locations and read points."""
    sums: dict[SiteKey, list[int]] = defaultdict(lambda: [0, 0])
    for (period, bucket, location, side, _, kind), (count, quantity) in places.items():
        figures = sums[(period, bucket, site_of(location), side, kind)]
        figures[0] += count
        figures[1] += quantity
    return sums


def stock_sums(rows: Sequence[LedgerRow]) -> dict[StockKey, list[int]]:
    """``[in, out]`` per (site, item, day) over ``rows`` that cross a site boundary."""
    sums: dict[StockKey, list[int]] = defaultdict(lambda: [0, 0])
    buckets = _Buckets()
    for row in rows:
        source = site_of(row.from_location) if row.from_location is not None else None
        target = site_of(row.to_location) if row.to_location is not None else None
        if source == target:
            continue
        day = buckets.of(row.event_time)[1]
        if target is not None:
            sums[(target, row.item_id, day)][0] += row.quantity
        if source is not None:
            sums[(source, row.item_id, day)][1] += row.quantity
    return sums


def _adding(table: sa.Table, figures: tuple[str, str]) -> Callable[[AsyncConnection], sa.Insert]:
    """The upsert that adds ``figures`` to ``table``'s row of the same primary key."""
    keys = [column.name for column in table.primary_key]

    def statement(conn: AsyncConnection) -> sa.Insert:
        insert = upsert(conn, table)
        return insert.on_conflict_do_update(
            index_elements=keys,
            set_={name: table.c[name] + insert.excluded[name] for name in figures},
        )

    return statement


_add_movements: Final = _adding(history_movements, ("count", "quantity"))
_add_places: Final = _adding(history_place_movements, ("count", "quantity"))
_add_sites: Final = _adding(history_site_movements, ("count", "quantity"))
_add_stock: Final = _adding(history_stock_daily, ("quantity_in", "quantity_out"))


@record
class RollupRows:
    """What a follower step adds to each rollup table (``RollupSink.prepare``)."""

    movements: list[dict[str, object]]
    places: list[dict[str, object]]
    sites: list[dict[str, object]]
    stock: list[dict[str, object]]


class RollupSink:
    """Adds ledger rows to the rollup tables in the follower's transaction."""

    name = ROLLUPS

    def __init__(self) -> None:
        self._costs_settled: tuple[int, int] | None = None
        """The cost tables' newest ids when no item's books were left to compute again."""

    def prepare(self, rows: Sequence[LedgerRow]) -> RollupRows:
        """The sums ``rows`` add, as rows of the rollup tables (no database work: the
        follower runs this before its write transaction)."""
        movements = movement_sums(rows)
        places = place_sums(movements)
        return RollupRows(
            movements=[
                {
                    "period": period,
                    "bucket": bucket,
                    "location": location,
                    "side": side,
                    "read_point": read_point,
                    "item_id": item_id,
                    "kind": kind,
                    "site": site_of(location),
                    "count": count,
                    "quantity": quantity,
                }
                for (period, bucket, location, side, read_point, item_id, kind), (
                    count,
                    quantity,
                ) in movements.items()
            ],
            places=[
                {
                    "period": period,
                    "bucket": bucket,
                    "location": location,
                    "side": side,
                    "read_point": read_point,
                    "kind": kind,
                    "site": site_of(location),
                    "count": count,
                    "quantity": quantity,
                }
                for (period, bucket, location, side, read_point, kind), (
                    count,
                    quantity,
                ) in places.items()
            ],
            sites=[
                {
                    "period": period,
                    "bucket": bucket,
                    "site": site,
                    "side": side,
                    "kind": kind,
                    "count": count,
                    "quantity": quantity,
                }
                for (period, bucket, site, side, kind), (count, quantity) in site_sums(
                    places
                ).items()
            ],
            stock=[
                {
                    "site": site,
                    "item_id": item_id,
                    "day": day,
                    "quantity_in": quantity_in,
                    "quantity_out": quantity_out,
                }
                for (site, item_id, day), (quantity_in, quantity_out) in stock_sums(rows).items()
            ],
        )

    async def apply(self, conn: AsyncConnection, prepared: RollupRows) -> None:
        """Add ``prepared`` to the rollup tables, in the follower's transaction."""
        # One prepared executemany each (``dialect.execute_many``): a step writes thousands
        # of buckets, and SQLAlchemy's per-row parameter handling cost more than SQLite.
        for table, statement, table_rows in (
            ("history_movements", _add_movements, prepared.movements),
            ("history_place_movements", _add_places, prepared.places),
            ("history_site_movements", _add_sites, prepared.sites),
            ("history_stock_daily", _add_stock, prepared.stock),
        ):
            if table_rows:
                await execute_many(conn, table, statement, table_rows)

    async def after(self, store: Store, start: int, rows: Sequence[LedgerRow]) -> None:
        """Bring the valuation books kept at checkpoints up to the rollups' position, in
        transactions of their own (a day's rows or ``BOOK_ROWS`` each): the rollups' step
        does not wait for them, nor ingest for both at once. Reports read the rows after
        the books' position from the ledger, so a lag only costs them time.

        The rows are read before each transaction, as the rollups' are
        (``server.history.follow``), and used only if the books' position has not moved
        since; else they are read again. When the books stood at the step's ``start`` and
        the rollups at its last row, the step's ``rows`` are those rows and are not read
        again (the books kept pace: a third of the follower's reads of the ledger)."""
        while True:
            async with store.read("reading the ledger for the valuation books") as conn:
                done = await book_checkpoints.position(conn)
                target = await position_on(conn, ROLLUPS)
                if done >= target:
                    return
                if rows and done == start and target == rows[-1].id:
                    fetched: Sequence[LedgerRow] = rows[:BOOK_ROWS]
                else:
                    fetched = await read_rows(conn, done, BOOK_ROWS)
            async with store.begin("keeping the valuation books", stock=False) as conn:
                await self._follow_books(conn, done, target, fetched)

    async def _follow_books(
        self, conn: AsyncConnection, done: int, target: int, fetched: Sequence[LedgerRow]
    ) -> None:
        """Add ``fetched`` (read after ``done``, the books' position then, with the rollups
        at ``target``) to the books, unless their position has moved since."""
        if await book_checkpoints.position(conn, lock=True) != done:
            return
        rows = [row for row in fetched if row.id <= target]
        # Every id up to the rollups' position is settled: past the last row read, when
        # fewer than a page came or some lie beyond it, there is nothing below it.
        complete = len(fetched) < BOOK_ROWS or fetched[-1].id > target
        reached = target if complete else rows[-1].id
        now = datetime.now(UTC)
        await book_checkpoints.follow(conn, rows, now)
        await location_snapshots.follow(conn, rows, reached, now)
        seen = await book_checkpoints.costs_seen(conn)
        if rows and seen != self._costs_settled:
            repaired = await book_checkpoints.repair_costs(conn, reached, REPAIR_ITEMS)
            # Settled once a step found nothing left (if this step's transaction fails, the
            # books stay as they were and reports replay those items: still right).
            self._costs_settled = seen if repaired == 0 else None
        await book_checkpoints.advance(conn, reached)


async def clear_rollups(conn: AsyncConnection) -> None:
    """Empty the rollup tables (the caller resets the cursor in the same transaction)."""
    await conn.execute(sa.delete(history_movements))
    await conn.execute(sa.delete(history_place_movements))
    await conn.execute(sa.delete(history_site_movements))
    await conn.execute(sa.delete(history_stock_daily))
    await book_checkpoints.clear(conn)
    await location_snapshots.clear(conn)
