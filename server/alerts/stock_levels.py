"""Stock levels per item and site, and the ``low_stock`` / ``overstock`` alerts they raise.

Definitions (issue 5):

- ``available = on hand + on order - allocated``, per item and site (the site is the first
  segment of a location id: stock in ``wh1.receiving`` and ``wh1.a.3`` is at ``wh1``).
- ``low_stock`` holds while ``available <= reorder point``.
- ``overstock`` holds while ``on hand > maximum``; the maximum is the item's ``max_stock``
  when the item master has such a column, else the top of a min/max policy:
  ``reorder point + reorder quantity`` (what on hand reaches right after a replenishment
  that arrived the moment stock hit the reorder point).

Only items with a reorder point (or a maximum) are evaluated, at the sites where they have a
balance row or an open order quantity (an item never stocked at a site is not "low" there).
The reserved site of goods on the road (``transit``) is not a site with a stock policy.

Where the figures come from:

- ``items.reorder_point`` and ``items.reorder_quantity`` (master data); ``items.max_stock``
  when the item master has such a column (it does not yet: the min/max top stands in).
- on hand: ``balances``; on order and allocated: ``order_positions`` (open purchase orders
  put their unreceived quantity on order, open sales and transfer orders allocate theirs),
  both per item and location, summed per site here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.rules.alerts import LOW_STOCK, OVERSTOCK
from server.rules.model import AlertSpec
from server.rules.policy import TRANSIT_SITE, site_of
from server.store.schema.core import balances, items
from server.store.schema.orders import order_positions

MAX_ITEMS_PER_SWEEP = 100_000
"""Items with a reorder point evaluated per sweep (the rest wait for the next one)."""
CHUNK = 1000
"""Item ids per ``IN (...)`` list."""


@dataclass(frozen=True, slots=True)
class StockLevel:
    """What one item has at one site, and its reorder policy."""

    item_id: int
    sku: str
    gtin: str | None
    site: str
    on_hand: int
    on_order: int
    allocated: int
    reorder_point: int | None
    maximum: int | None

    @property
    def available(self) -> int:
        return self.on_hand + self.on_order - self.allocated

    def evidence(self) -> dict[str, object]:
        return {
            "sku": self.sku,
            "gtin": self.gtin,
            "site": self.site,
            "on_hand": self.on_hand,
            "on_order": self.on_order,
            "allocated": self.allocated,
            "available": self.available,
            "reorder_point": self.reorder_point,
            "max_stock": self.maximum,
        }


def level_alerts(levels: Iterable[StockLevel]) -> list[AlertSpec]:
    """The stock level alerts that hold. Pure: no I/O."""
    holding: list[AlertSpec] = []
    for level in levels:
        subject = f"{level.site}/{level.sku}"
        if level.reorder_point is not None and level.available <= level.reorder_point:
            holding.append(LOW_STOCK.raise_(subject, level.evidence(), site=level.site))
        if level.maximum is not None and level.on_hand > level.maximum:
            holding.append(OVERSTOCK.raise_(subject, level.evidence(), site=level.site))
    return holding


def _column(table: sa.Table, name: str) -> sa.ColumnElement[int] | None:
    column = table.c.get(name)
    return column if column is not None else None


def _maximum(
    reorder_point: int | None, reorder_quantity: int | None, max_stock: int | None
) -> int | None:
    if max_stock is not None:
        return max_stock
    if reorder_point is not None and reorder_quantity is not None:
        return reorder_point + reorder_quantity
    return None


async def order_quantities(
    conn: AsyncConnection, item_ids: Iterable[int]
) -> Mapping[tuple[int, str], tuple[int, int]]:
    """Open (on order, allocated) per (item id, site)."""
    found: dict[tuple[int, str], tuple[int, int]] = {}
    ids = sorted(set(item_ids))
    for start in range(0, len(ids), CHUNK):
        rows = await conn.execute(
            sa.select(
                order_positions.c.item_id,
                order_positions.c.location_id,
                order_positions.c.on_order,
                order_positions.c.allocated,
            ).where(order_positions.c.item_id.in_(ids[start : start + CHUNK]))
        )
        for row in rows:
            key = (row.item_id, site_of(row.location_id))
            ordered, allocated = found.get(key, (0, 0))
            found[key] = (ordered + int(row.on_order), allocated + int(row.allocated))
    return found


async def stock_levels(conn: AsyncConnection) -> list[StockLevel]:
    """Stock levels of the items that have a reorder point or a maximum, per site."""
    reorder_point = _column(items, "reorder_point")
    if reorder_point is None:
        return []
    reorder_quantity = _column(items, "reorder_quantity")
    max_stock = _column(items, "max_stock")
    null = sa.null()
    policy = (
        await conn.execute(
            sa.select(
                items.c.id,
                items.c.sku,
                items.c.gtin,
                reorder_point.label("reorder_point"),
                (reorder_quantity if reorder_quantity is not None else null).label("quantity"),
                (max_stock if max_stock is not None else null).label("max_stock"),
            )
            .where(
                sa.or_(reorder_point.is_not(None), max_stock.is_not(None))
                if max_stock is not None
                else reorder_point.is_not(None)
            )
            .order_by(items.c.id)
            .limit(MAX_ITEMS_PER_SWEEP)
        )
    ).all()
    if not policy:
        return []
    ids = [row.id for row in policy]
    on_hand: dict[tuple[int, str], int] = defaultdict(int)
    for chunk_start in range(0, len(ids), CHUNK):
        chunk = ids[chunk_start : chunk_start + CHUNK]
        rows = await conn.execute(
            sa.select(balances.c.item_id, balances.c.location_id, balances.c.on_hand).where(
                balances.c.item_id.in_(chunk)
            )
        )
        for row in rows:
            on_hand[(row.item_id, site_of(row.location_id))] += int(row.on_hand)
    orders = await order_quantities(conn, ids)
    by_id = {row.id: row for row in policy}
    levels: list[StockLevel] = []
    for item_id, site in sorted(set(on_hand) | set(orders)):
        if site == TRANSIT_SITE:
            continue
        row = by_id[item_id]
        ordered, allocated = orders.get((item_id, site), (0, 0))
        levels.append(
            StockLevel(
                item_id=item_id,
                sku=row.sku,
                gtin=row.gtin,
                site=site,
                on_hand=on_hand.get((item_id, site), 0),
                on_order=ordered,
                allocated=allocated,
                reorder_point=row.reorder_point,
                maximum=_maximum(row.reorder_point, row.quantity, row.max_stock),
            )
        )
    return levels
