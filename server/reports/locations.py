"""What each location held of each item as of a moment, from the snapshots, the ledger and
the balances.

The valuation books are kept per item and site (``server.reports.valuation``), so the stock
value per location (``valuation_reports.stock_value`` grouped by location) takes each
location's quantity from here and the site's unit cost from the books.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.reports.location_snapshots import Held, held_at, marks, moved, summed
from server.store.schema.core import balances, ledger
from server.store.schema.history import book_cursor


def _plans(
    as_of: datetime, kept: list[datetime], first: datetime, last: datetime
) -> list[tuple[float, str, datetime | None]]:
    """The ways to sum the quantities as of ``as_of``, each with the span of ledger time it
    reads: forwards from the snapshot at or before it (or from the first row), backwards
    from the snapshot after it, backwards from the balances (the last row)."""
    before = [boundary for boundary in kept if boundary <= as_of]
    after = [boundary for boundary in kept if boundary > as_of]
    start = before[-1] if before else None
    plans = [((as_of - (start or first)).total_seconds(), "forwards", start)]
    if after:
        plans.append(((after[0] - as_of).total_seconds(), "backwards", after[0]))
    plans.append(((last - as_of).total_seconds(), "balances", None))
    return plans


async def location_quantities(
    conn: AsyncConnection,
    as_of: datetime,
    item_ids: Sequence[int] | None,
    *,
    plan: str | None = None,
) -> Held:
    """What each location held of each item as of ``as_of`` (item id, location -> quantity,
    zeros left out).

    Summed in one statement (one snapshot of the database) from whichever start reads the
    shortest span of the ledger (``plan``: that one; ``forwards``, ``backwards``,
    ``balances`` forces one, for tests):

    - ``forwards``: the snapshot at or before ``as_of`` (``location_snapshots``), plus the
      rows from it up to ``as_of``; without one, every row before ``as_of``;
    - ``backwards``: the snapshot after ``as_of`` less the rows it holds from ``as_of`` on;
    - ``balances``: the balances now less every row from ``as_of`` on (balances are the
      ledger's sums: ``stockgate server check-ledger``).

    A snapshot holds the rows up to the books' position; the rows after it from before
    ``as_of`` (few: those the follower has not reached yet) are added to either snapshot.
    The list of snapshots is read before that statement and again after it: a snapshot
    that went in between (``reset-history``) means a second sum from the ledger alone.
    """
    row = ledger.c
    first, last = (
        await conn.execute(
            sa.select(
                sa.select(sa.func.min(row.event_time)).scalar_subquery(),
                sa.select(sa.func.max(row.event_time)).scalar_subquery(),
            )
        )
    ).one()
    if first is None:
        return {}
    plans = _plans(as_of, await marks(conn), first, last)
    chosen = next((p for p in plans if p[1] == plan), None) if plan else min(plans)
    if chosen is None:
        raise ValueError(f"no {plan} plan for {as_of.isoformat()}")
    _, way, boundary = chosen
    held = await _summed(conn, as_of, item_ids, way, boundary)
    if boundary is not None and boundary not in await marks(conn):
        # The snapshot went (reset-history) between the two reads: the sum lacks what it
        # held. Summed again from the ledger alone.
        _, way, boundary = min(_plans(as_of, [], first, last))
        held = await _summed(conn, as_of, item_ids, way, boundary)
    return held


async def _summed(
    conn: AsyncConnection,
    as_of: datetime,
    item_ids: Sequence[int] | None,
    way: str,
    boundary: datetime | None,
) -> Held:
    row = ledger.c
    # Read in the statement itself, so the position and the snapshot are of one moment.
    position = sa.func.coalesce(
        sa.select(book_cursor.c.position).where(book_cursor.c.id == 1).scalar_subquery(), 0
    )
    parts: list[sa.Select[Any]]
    if way == "balances":
        parts = moved(row.event_time >= as_of, sign=-1, item_ids=item_ids)
        now = sa.select(balances.c.item_id, balances.c.location_id, balances.c.on_hand)
        if item_ids is not None:
            now = now.where(balances.c.item_id.in_(sorted(item_ids)))
        parts.append(now)
    elif boundary is None:
        parts = moved(row.event_time < as_of, item_ids=item_ids)
    elif way == "forwards":
        since = moved(row.event_time >= boundary, row.event_time < as_of, item_ids=item_ids)
        late = moved(row.id > position, row.event_time < boundary, item_ids=item_ids)
        parts = [held_at(boundary, item_ids), *since, *late]
    else:
        undone = moved(
            row.id <= position,
            row.event_time >= as_of,
            row.event_time < boundary,
            sign=-1,
            item_ids=item_ids,
        )
        unfollowed = moved(row.id > position, row.event_time < as_of, item_ids=item_ids)
        parts = [held_at(boundary, item_ids), *undone, *unfollowed]
    return {
        (int(item_id), str(location)): int(quantity)
        for item_id, location, quantity in await conn.execute(summed(parts))
        if quantity
    }
