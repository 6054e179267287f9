"""The books as of a moment, from the newest checkpoint before it and the ledger after it.

``books_at(moment)`` gives what replaying the whole ledger before ``moment`` gives
(``server.reports.valuation.load_books``), with the flows counted from the first row on:

- the books kept at the newest checkpoint at or before ``moment``
  (``server.reports.book_checkpoints``), except for the items the checkpoint may not hold
  right: an item with a ledger row the books have not taken in yet (an id after their
  position, ``book_checkpoints.position``) from before the checkpoint, and an item whose
  cost rows changed since its books were computed; those items are replayed from their
  first row;
- then the ledger rows from the checkpoint up to ``moment``, whatever their id.

Without a checkpoint (the follower has not made one, or ``moment`` lies before the first),
every row before ``moment`` is replayed.

``period_books(since, until)`` is the books at ``until`` with each one's opening (its
state at ``since``) and its flows over the period (the difference of the two; given a second
read connection, the books at both ends are read at once, one on each: the database's part
of one overlaps the Python of the other);
``shipped_per_period`` the quantity shipped per item and period (summed from the ledger in
SQL: it is not kept).
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.reports.book_checkpoints import FOREVER, cost_marks, marks, position, stored_books
from server.reports.book_state import CostCounts, changed_costs, cost_counts
from server.reports.valuation import (
    ZERO,
    Books,
    Flow,
    StandardCosts,
    cost_rows,
    recorded_costs,
    standard_costs,
)
from server.store.schema.core import ledger
from server.store.sites import in_sites


async def _late_items(
    conn: AsyncConnection, position: int, boundary: datetime, item_ids: Sequence[int] | None
) -> set[int]:
    # The time wrapped in an expression, and neither DISTINCT nor the items in SQL, so the
    # plan walks the ids after the position (the few the follower has not reached) instead
    # of every row before the checkpoint or the whole index by item.
    time = sa.func.coalesce(ledger.c.event_time, boundary)
    query = sa.select(ledger.c.item_id).where(ledger.c.id > position, time < boundary)
    late = {int(row[0]) for row in await conn.execute(query)}
    return late if item_ids is None else late & set(item_ids)


@dataclass(frozen=True, slots=True)
class _Kept:
    """What every read of the books in one report shares."""

    marks: list[datetime]
    position: int
    standard: StandardCosts
    cost_marks: CostCounts
    cost_counts: CostCounts


async def _kept(conn: AsyncConnection, item_ids: Sequence[int] | None) -> _Kept:
    return _Kept(
        await marks(conn),
        await position(conn),
        await standard_costs(conn, item_ids),
        await cost_marks(conn),
        await cost_counts(conn, item_ids),
    )


def _opened(standard: StandardCosts, recorded: dict[int, Decimal]) -> Books:
    """Books whose flows count from the first row on, opened at once: their openings
    are not used (``period_books`` sets its own), so the books read from a checkpoint are
    not given one each when the first row comes."""
    books = Books(standard, recorded, FOREVER, demand=False)
    books.close()
    return books


async def books_at(
    conn: AsyncConnection,
    moment: datetime,
    item_ids: Sequence[int] | None,
    kept: _Kept | None = None,
) -> Books:
    """The books of every item (or of ``item_ids``) after the ledger rows before
    ``moment``, their flows counted from the first row on."""
    if kept is None:
        kept = await _kept(conn, item_ids)
    before = [boundary for boundary in kept.marks if boundary <= moment]
    if not before:
        books = _opened(kept.standard, await recorded_costs(conn, moment, item_ids))
        async for chunk in cost_rows(conn, moment, item_ids):
            for row in chunk:
                books.apply(row)
        return books
    boundary = before[-1]
    stale = await _late_items(conn, kept.position, boundary, item_ids)
    stored = await stored_books(conn, boundary, item_ids)
    stale |= changed_costs(kept.cost_marks, kept.cost_counts, sorted({item for item, _ in stored}))
    recorded = await recorded_costs(conn, moment, item_ids, since=boundary)
    if stale:
        recorded.update(await recorded_costs(conn, boundary, sorted(stale)))
    books = _opened(kept.standard, recorded)
    books.books.update((key, book) for key, book in stored.items() if key[0] not in stale)
    if stale:
        async for chunk in cost_rows(conn, boundary, sorted(stale)):
            for row in chunk:
                books.apply(row)
    async for chunk in cost_rows(conn, moment, item_ids, since=boundary):
        for row in chunk:
            books.apply(row)
    return books


def _less(later: Flow, earlier: Flow | None) -> Flow:
    if earlier is None:
        return Flow(
            received_quantity=later.received_quantity,
            received_value=later.received_value,
            shipped_quantity=later.shipped_quantity,
            shipped_value=list(later.shipped_value),
            losses={reason: list(entry) for reason, entry in later.losses.items()},
        )
    losses: dict[str, list[Any]] = {}
    for reason, entry in later.losses.items():
        before = earlier.losses.get(reason, [0, ZERO, ZERO])
        quantity = entry[0] - before[0]
        if quantity:
            # A reason with nothing lost in the period is not listed (as a replay gives).
            losses[reason] = [quantity, entry[1] - before[1], entry[2] - before[2]]
    return Flow(
        received_quantity=later.received_quantity - earlier.received_quantity,
        received_value=later.received_value - earlier.received_value,
        shipped_quantity=later.shipped_quantity - earlier.shipped_quantity,
        shipped_value=[
            value - before
            for value, before in zip(later.shipped_value, earlier.shipped_value, strict=True)
        ],
        losses=losses,
    )


def _next_midnight(moment: datetime) -> datetime:
    """``moment`` if it is a UTC midnight, else the one after it."""
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if day == moment else day + timedelta(days=1)


def period_count(since: datetime, until: datetime, step: timedelta) -> int:
    """Periods of ``step`` from ``since`` to ``until``, a last partial one counted whole."""
    return max(1, math.ceil((until - since) / step))


def _period_index(since: datetime, periods: int, step: timedelta) -> sa.ColumnElement[int]:
    """The period (of ``step``, from ``since``; the last of ``periods`` takes the rest) a
    ledger row's UTC day falls in, as ``min(periods - 1, int((day - since) / step))``:
    the day is in period ``k`` or later exactly when the row is at or after the midnight
    that starts the first day on or after ``since + k * step``. Comparisons of the event
    time alone, so the same on both databases and no date arithmetic per row; nested as a
    binary search, so a row takes about log2(periods) of them (a quarter's 13 weeks in a
    flat CASE took 7 on average, and the CASE was half the time of ABC/XYZ's demand sum)."""
    starts = [_next_midnight(since + step * k) for k in range(1, periods)]
    return _first_at_or_after(starts, 0, len(starts))


def _first_at_or_after(starts: list[datetime], low: int, high: int) -> sa.ColumnElement[int]:
    """The number of ``starts[low:high]`` the event time is at or after, plus ``low``
    (``starts`` ascending, the time known to be at or after ``starts[low - 1]`` and before
    ``starts[high]``)."""
    if low == high:
        return sa.literal(low)
    middle = (low + high) // 2
    return sa.case(
        (
            ledger.c.event_time >= starts[middle],
            _first_at_or_after(starts, middle + 1, high),
        ),
        else_=_first_at_or_after(starts, low, middle),
    )


async def shipped_per_period(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    step: timedelta,
    item_ids: Sequence[int] | None,
    sites: Sequence[frozenset[str]],
) -> dict[int, dict[int, int]]:
    """Quantity shipped (to no site) per item and period over ``since``..``until``: item
    -> {period: quantity}, the period of each row's UTC day as ``_period_index`` gives it
    (a day that starts before ``since`` is in period 0; the periods are
    ``ceil((until - since) / step)``, the last one takes what is left). Rows leaving a
    site in each of ``sites`` only. Summed in SQL: a quarter's shipments are hundreds of
    thousands of rows at ten million ledger rows, their sums per week a few per item."""
    row = ledger.c
    periods = period_count(since, until, step)
    period = _period_index(since, periods, step).label("period")
    query = (
        sa.select(row.item_id, period, sa.func.sum(row.quantity))
        .where(
            row.kind == "shipment",
            row.to_location.is_(None),
            row.from_location.is_not(None),
            row.event_time >= since,
            row.event_time < until,
            *(in_sites(row.from_location, allowed) for allowed in sites),
        )
        .group_by(row.item_id, period)
    )
    if item_ids is not None:
        query = query.where(row.item_id.in_(sorted(item_ids)))
    shipped: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for item_id, index, quantity in await conn.execute(query):
        shipped[int(item_id)][int(index)] += int(quantity)
    return shipped


async def period_books(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    item_ids: Sequence[int] | None,
    side: AsyncConnection | None = None,
) -> Books:
    """The books at ``until``, each with its opening at ``since`` and its flows over
    ``since``..``until`` (without the demand per day: ``shipped_per_period``); with a
    ``side`` connection, the books at ``until`` are read on it while those at ``since`` are
    read on ``conn``."""
    kept = await _kept(conn, item_ids)
    if side is None:
        start = await books_at(conn, since, item_ids, kept)
        end = await books_at(conn, until, item_ids, kept)
    else:
        async with asyncio.TaskGroup() as group:
            starting = group.create_task(books_at(conn, since, item_ids, kept))
            ending = group.create_task(books_at(side, until, item_ids, kept))
        start, end = starting.result(), ending.result()
    result = Books(StandardCosts(()), {}, since)
    for key, book in end.books.items():
        before = start.books.get(key)
        book.opening = (
            (before.quantity, before.average_value, before.fifo_value)
            if before is not None
            else (0, ZERO, ZERO)
        )
        book.flow = _less(book.flow, before.flow if before is not None else None)
        result.books[key] = book
    return result
