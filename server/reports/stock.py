"""Reports over the stock and its history (``GET /api/v1/reports/...``).

``dead_stock``: items on hand at a site that nothing has taken out of that site for N days.
"Taken out" is stock leaving the site (a shipment, a loss, a transfer to another site):
the ``quantity_out`` of ``history_stock_daily``; moves inside the site (put-away, picks to
staging) do not count as movement out. On hand is the item's balances summed over the
site's locations. The reserved ``transit`` site (goods between sites) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.history.rollups import bucket_start
from server.store.schema.core import balances, items
from server.store.schema.history import history_stock_daily

TRANSIT_SITE: Final = "transit"


def site_expression(conn: AsyncConnection, column: Any) -> sa.ColumnElement[str]:
    """The site (first segment) of a location id column, in SQL."""
    if conn.dialect.name == "postgresql":
        return sa.func.split_part(column, ".", 1)
    dot = sa.func.instr(column, ".")
    return sa.case((dot > 0, sa.func.substr(column, 1, dot - 1)), else_=column)


@dataclass(frozen=True, slots=True)
class DeadStockRow:
    site: str
    sku: str
    gtin: str | None
    name: str
    on_hand: int
    last_outbound: datetime | None
    """The UTC day stock of this item last left the site (None: never, as far as the
    history reaches)."""


async def dead_stock(
    conn: AsyncConnection,
    as_of: datetime,
    days: int,
    site: str | None,
    sites: frozenset[str],
) -> list[DeadStockRow]:
    """Items on hand at a site with no stock leaving that site in the ``days`` days before
    ``as_of`` (whole UTC days: from the start of ``as_of``'s day minus ``days``), by site
    and SKU."""
    cutoff = bucket_start(as_of, "day") - timedelta(days=days)
    place = site_expression(conn, balances.c.location_id)
    held_conditions: list[sa.ColumnElement[bool]] = [place != TRANSIT_SITE]
    if site is not None:
        held_conditions.append(place == site)
    if sites:
        held_conditions.append(place.in_(sorted(sites)))
    held = (
        sa.select(
            place.label("site"),
            balances.c.item_id.label("item_id"),
            sa.func.sum(balances.c.on_hand).label("on_hand"),
        )
        .where(*held_conditions)
        .group_by(place, balances.c.item_id)
        .subquery("held")
    )
    stock = history_stock_daily.c

    def outbound(*since: sa.ColumnElement[bool]) -> sa.Select[Any]:
        # One (site, item)'s days by the rollup's key: only the held pairs are looked at.
        return sa.select(stock.day).where(
            stock.site == held.c.site,
            stock.item_id == held.c.item_id,
            stock.quantity_out > 0,
            stock.day <= as_of,
            *since,
        )

    last_outbound = (
        outbound().with_only_columns(sa.func.max(stock.day)).scalar_subquery().label("last")
    )
    rows = await conn.execute(
        sa.select(
            held.c.site,
            items.c.sku,
            items.c.gtin,
            items.c.name,
            held.c.on_hand,
            last_outbound,
        )
        .select_from(held.join(items, items.c.id == held.c.item_id))
        .where(held.c.on_hand > 0, ~outbound(stock.day >= cutoff).exists())
        .order_by(held.c.site, items.c.sku)
    )
    return [
        DeadStockRow(
            site=str(row[0]),
            sku=row[1],
            gtin=row[2],
            name=row[3],
            on_hand=int(row[4]),
            last_outbound=row[5],
        )
        for row in rows
    ]
