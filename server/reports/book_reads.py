"""The books as of a moment, from the newest checkpoint before it and the ledger after it.

``books_at(moment)`` gives what replaying the whole ledger before ``moment`` gives
(``server.reports.valuation.load_books``), with the flows counted from the first row on:

- the books kept at the newest checkpoint at or before ``moment``
  (``server.reports.book_checkpoints``), except for the items the checkpoint may not hold
  right: an item with a ledger row the rollups follower has not reached yet (an id after
  its position) from before the checkpoint, and an item whose cost rows changed since its
  books were computed; those items are replayed from their first row;
- then the ledger rows from the checkpoint up to ``moment``, whatever their id.

Without a checkpoint (the follower has not made one, or ``moment`` lies before the first),
every row before ``moment`` is replayed.

``period_books(since, until)`` is the books at ``until`` with each one's opening (its
state at ``since``) and its flows over the period (the difference of the two), and, when
asked, the quantity shipped per day (read from the ledger: it is not kept).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.history.rollups import ROLLUPS
from server.reports.book_checkpoints import FOREVER, cost_marks, marks, stored_books
from server.reports.book_state import changed_costs, cost_counts
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
from server.store.schema.history import history_cursors
from server.store.sites import site_of


async def _position(conn: AsyncConnection) -> int:
    value = await conn.scalar(
        sa.select(history_cursors.c.position).where(history_cursors.c.name == ROLLUPS)
    )
    return int(value or 0)


async def _late_items(
    conn: AsyncConnection, position: int, boundary: datetime, item_ids: Sequence[int] | None
) -> set[int]:
    # The time wrapped in an expression, so the plan walks the ids after the position (the
    # few the follower has not reached) instead of every row before the checkpoint.
    time = sa.func.coalesce(ledger.c.event_time, boundary)
    query = sa.select(ledger.c.item_id).distinct().where(ledger.c.id > position, time < boundary)
    if item_ids is not None:
        query = query.where(ledger.c.item_id.in_(sorted(item_ids)))
    return {int(row[0]) for row in await conn.execute(query)}


async def books_at(
    conn: AsyncConnection, moment: datetime, item_ids: Sequence[int] | None
) -> Books:
    """The books of every item (or of ``item_ids``) after the ledger rows before
    ``moment``, their flows counted from the first row on."""
    kept = [boundary for boundary in await marks(conn) if boundary <= moment]
    if not kept:
        books = Books(
            await standard_costs(conn, item_ids),
            await recorded_costs(conn, moment, item_ids),
            FOREVER,
            demand=False,
        )
        async for chunk in cost_rows(conn, moment, item_ids):
            for row in chunk:
                books.apply(row)
        return books
    boundary = kept[-1]
    stale = await _late_items(conn, await _position(conn), boundary, item_ids)
    known = await cost_marks(conn)
    counts = await cost_counts(conn, item_ids)
    stored = await stored_books(conn, boundary, item_ids)
    stale |= changed_costs(known, counts, sorted({item for item, _ in stored}))
    recorded = await recorded_costs(conn, moment, item_ids, since=boundary)
    if stale:
        recorded.update(await recorded_costs(conn, boundary, sorted(stale)))
    books = Books(await standard_costs(conn, item_ids), recorded, FOREVER, demand=False)
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


async def _demand(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    item_ids: Sequence[int] | None,
) -> dict[tuple[int, str], dict[datetime, int]]:
    """Quantity shipped (to no site) per item, site and UTC day over the period."""
    row = ledger.c
    query = sa.select(row.item_id, row.from_location, row.event_time, row.quantity).where(
        row.kind == "shipment",
        row.to_location.is_(None),
        row.from_location.is_not(None),
        row.event_time >= since,
        row.event_time < until,
    )
    if item_ids is not None:
        query = query.where(row.item_id.in_(sorted(item_ids)))
    demand: dict[tuple[int, str], dict[datetime, int]] = {}
    for item_id, location, at, quantity in await conn.execute(query):
        days = demand.setdefault((int(item_id), site_of(location)), defaultdict(int))
        days[at.replace(hour=0, minute=0, second=0, microsecond=0)] += int(quantity)
    return demand


async def period_books(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    item_ids: Sequence[int] | None,
    *,
    demand: bool = False,
) -> Books:
    """The books at ``until``, each with its opening at ``since`` and its flows (and, with
    ``demand``, its quantity shipped per day) over ``since``..``until``."""
    start = await books_at(conn, since, item_ids)
    end = await books_at(conn, until, item_ids)
    shipped = await _demand(conn, since, until, item_ids) if demand else {}
    result = Books(StandardCosts(()), {}, since)
    for key, book in end.books.items():
        before = start.books.get(key)
        book.opening = (
            (before.quantity, before.average_value, before.fifo_value)
            if before is not None
            else (0, ZERO, ZERO)
        )
        book.flow = _less(book.flow, before.flow if before is not None else None)
        days = shipped.get(key)
        if days:
            book.flow.demand.update(days)
        result.books[key] = book
    return result
