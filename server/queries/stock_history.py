"""Stock as of a past time, summed from the ledger (``GET /api/v1/stock?as_of=...``).

On hand of an item at a location as of ``T`` is the sum of the quantities of the ledger
rows with event time at or before ``T`` that went to it, minus those that left it. Rows are
never edited, so the answer for a time only changes when rows dated before it arrive later
(a late batch, a back-dated adjustment); a reversal takes effect at its own event time.
The filters mean what they mean for current stock, and the same indexes serve them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.queries.stock import STOCK_ITEM_COLUMNS, StockQuery
from server.queries.subtree import in_subtree
from server.queries.views import StockRow
from server.store.schema.core import items, ledger
from server.store.sites import in_sites


def _side(
    location: sa.ColumnElement[str], sign: int, query: StockQuery, as_of: datetime
) -> sa.Select[Any]:
    conditions: list[sa.ColumnElement[bool]] = [
        location.is_not(None),
        ledger.c.event_time <= as_of,
    ]
    if query.location is not None:
        conditions.append(in_subtree(location, query.location))
    if query.sites:
        conditions.append(in_sites(location, query.sites))
    if query.gtin is not None or query.sku is not None:
        item_ids = sa.select(items.c.id)
        if query.gtin is not None:
            item_ids = item_ids.where(items.c.gtin == query.gtin)
        if query.sku is not None:
            item_ids = item_ids.where(items.c.sku == query.sku)
        conditions.append(ledger.c.item_id.in_(item_ids.scalar_subquery()))
    quantity = ledger.c.quantity if sign > 0 else -ledger.c.quantity
    return sa.select(
        ledger.c.item_id.label("item_id"),
        location.label("location"),
        quantity.label("delta"),
    ).where(*conditions)


async def stock_as_of(
    conn: AsyncConnection, query: StockQuery, as_of: datetime
) -> tuple[list[StockRow], int]:
    """On hand per item and location as of ``as_of`` (inclusive), and how many rows match."""
    deltas = sa.union_all(
        _side(ledger.c.to_location, +1, query, as_of),
        _side(ledger.c.from_location, -1, query, as_of),
    ).subquery("deltas")
    on_hand = sa.func.sum(deltas.c.delta)
    grouped = sa.select(deltas.c.item_id, deltas.c.location, on_hand.label("on_hand")).group_by(
        deltas.c.item_id, deltas.c.location
    )
    if not query.include_zero:
        grouped = grouped.having(on_hand != 0)
    sums = grouped.subquery("sums")
    rows = await conn.execute(
        sa.select(*STOCK_ITEM_COLUMNS, sums.c.location, sums.c.on_hand)
        .join(items, items.c.id == sums.c.item_id)
        .order_by(items.c.sku, sums.c.location)
        .limit(query.limit)
        .offset(query.offset)
    )
    total = await conn.scalar(sa.select(sa.func.count()).select_from(sums))
    found = [
        StockRow(
            sku=row.sku,
            gtin=row.gtin,
            name=row.name,
            reviewed=row.reviewed,
            location=row.location,
            on_hand=int(row.on_hand),
        )
        for row in rows
    ]
    return found, int(total or 0)
