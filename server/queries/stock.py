"""Stock on hand: per item and location, with what open orders expect or hold there.

Callers validate and bound the inputs; a location filter is the location and its subtree
(``server.queries.subtree``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.queries.subtree import in_subtree, subtree_of, unindexed
from server.queries.views import StockRow
from server.store.schema.core import balances, items
from server.store.schema.orders import order_positions
from server.store.sites import in_sites

STOCK_ITEM_COLUMNS: Final = (items.c.sku, items.c.gtin, items.c.name, items.c.reviewed)
"""What a stock row (``StockRow``) shows of its item."""


@dataclass(frozen=True, slots=True)
class StockQuery:
    gtin: str | None = None
    sku: str | None = None
    location: str | None = None
    include_zero: bool = False
    limit: int = 100
    offset: int = 0
    sites: frozenset[str] = frozenset()
    """Only locations of these sites (empty: every site)."""


async def stock(conn: AsyncConnection, query: StockQuery) -> tuple[list[StockRow], int]:
    """On hand per item and location, and how many rows match in all.

    Rows come in SKU, then location order; a location filter is planned as for
    ``movements`` (small subtrees through the location index, large ones not).
    """
    conditions: list[sa.ColumnElement[bool]] = []
    if query.gtin is not None:
        conditions.append(items.c.gtin == query.gtin)
    if query.sku is not None:
        conditions.append(items.c.sku == query.sku)
    figures = {
        figure: sa.func.coalesce(order_positions.c[figure], 0)
        for figure in ("on_order", "allocated", "in_transit")
    }
    page_conditions = list(conditions)
    if not query.include_zero:
        # A row with nothing on hand still matters while open orders expect or hold goods.
        page_conditions.append(sa.or_(balances.c.on_hand != 0, *(f != 0 for f in figures.values())))
    # An item filter reads that item's balances by key; a location only filters them.
    keyed = query.gtin is not None or query.sku is not None
    large = (
        query.location is not None and not keyed and await subtree_of(conn, query.location) is None
    )
    # The page and the count want different plans for a large subtree: the page walks
    # items in SKU order and stops after it (the location index would have every row of
    # the subtree sorted); the count reads the subtree's range of that index.
    hidden = unindexed(balances.c.location_id)
    page_conditions += _places(query, hidden if large else balances.c.location_id, hidden)
    positions = sa.and_(
        order_positions.c.item_id == balances.c.item_id,
        order_positions.c.location_id == balances.c.location_id,
    )
    # Items first: the page is read in SKU order (SQLite keeps this join order).
    joined = balances.join(items, items.c.id == balances.c.item_id).outerjoin(
        order_positions, positions
    )
    rows = await conn.execute(
        sa.select(
            *STOCK_ITEM_COLUMNS,
            balances.c.location_id.label("location"),
            balances.c.on_hand,
            *(value.label(figure) for figure, value in figures.items()),
        )
        .select_from(joined)
        .where(*page_conditions)
        .order_by(items.c.sku, balances.c.location_id)
        .limit(query.limit)
        .offset(query.offset)
    )
    # Every balance has its item (a foreign key), so only an item filter needs the join.
    held = balances.join(items, items.c.id == balances.c.item_id) if keyed else balances
    count_conditions = [
        *conditions,
        *_places(query, balances.c.location_id, balances.c.location_id),
    ]
    if query.include_zero:
        total = await _count(conn, held, count_conditions)
    else:
        # Counted in two parts that add up to the page's condition: the rows with goods on
        # hand (no join), and those with none that an open order still names, found from
        # the order positions (few) and looked up in balances by key. One count joining
        # the order positions to every balance row cost several times as much over a site.
        total = await _count(conn, held, [*count_conditions, balances.c.on_hand != 0])
        ordered: sa.FromClause = order_positions
        if keyed:
            ordered = order_positions.join(items, items.c.id == order_positions.c.item_id)
        nothing_held = (
            sa.select(balances.c.item_id).where(positions, balances.c.on_hand == 0).exists()
        )
        total += await _count(
            conn,
            ordered,
            [
                *conditions,
                *_places(query, order_positions.c.location_id, order_positions.c.location_id),
                sa.or_(*(order_positions.c[figure] != 0 for figure in figures)),
                nothing_held,
            ],
        )
    return [StockRow.model_validate(row._mapping) for row in rows], total


def _places(
    query: StockQuery, subtree_column: sa.ColumnElement[str], sites_column: sa.ColumnElement[str]
) -> list[sa.ColumnElement[bool]]:
    """The location and site conditions of ``query``, each on the column given for it."""
    found: list[sa.ColumnElement[bool]] = []
    if query.location is not None:
        found.append(in_subtree(subtree_column, query.location))
    if query.sites:
        found.append(in_sites(sites_column, query.sites))
    return found


async def _count(
    conn: AsyncConnection, selectable: sa.FromClause, conditions: Sequence[sa.ColumnElement[bool]]
) -> int:
    total = await conn.scalar(sa.select(sa.func.count()).select_from(selectable).where(*conditions))
    return int(total or 0)
