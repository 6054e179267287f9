"""The read side of the history: movement buckets and daily closing stock from the rollups.

Both read only the rollup tables (``server.store.schema.history``), never the ledger, so their
cost follows the number of buckets asked for, not the size of the ledger. They show what
the rollups follower has reached (normally within ``[history] poll_interval_s`` of ingest).

Queries that neither filter nor group by item read ``history_place_movements`` (the sums
without the item), and of those, the ones that neither filter by a location below a site
nor group by location, and neither filter nor group by read point, read
``history_site_movements`` (per site); the others read
``history_movements``.

Movement buckets always keep the ``side`` apart: a transfer leaves one location (``out``)
and enters another (``in``); summed together they would count it twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.history.rollups import bucket_start
from server.queries.subtree import in_subtree
from server.store.schema.core import items
from server.store.schema.history import (
    Period,
    Side,
    history_movements,
    history_place_movements,
    history_site_movements,
    history_stock_daily,
)

GroupBy = Literal["site", "location", "read_point", "sku", "kind"]
GROUP_BY: Final[tuple[GroupBy, ...]] = ("site", "location", "read_point", "sku", "kind")
STREAM_ROWS: Final = 1000
"""Rows fetched from the database at a time while a CSV streams."""


@dataclass(frozen=True, slots=True)
class MovementHistoryQuery:
    period: Period
    since: datetime
    until: datetime
    group_by: tuple[GroupBy, ...] = ()
    gtin: str | None = None
    sku: str | None = None
    location: str | None = None
    read_point: str | None = None
    kind: str | None = None
    side: Side | None = None
    sites: frozenset[str] = frozenset()
    """Only these sites (empty: every site)."""

    @property
    def columns(self) -> list[str]:
        """The columns of each result row, in order."""
        return ["bucket", "side", *self.group_by, "count", "quantity"]


def needs_items(query: MovementHistoryQuery) -> bool:
    """Whether ``query`` filters or groups by item (only the rollup by item answers it)."""
    return "sku" in query.group_by or query.sku is not None or query.gtin is not None


def movement_select(
    query: MovementHistoryQuery,
    *,
    by_item: bool = False,
    after: Sequence[Any] | None = None,
) -> sa.Select[Any]:
    """The SQL of ``query``; ``by_item`` reads the rollup by item even where the one without
    the item would answer (the benchmark's baseline); ``after``: only the buckets whose keys
    (bucket, side and the ``group_by`` columns, as stored) come after these (keyset
    pagination: a page costs the same wherever it starts)."""
    # Without an item filter or column, the rollup without the item answers: one row per
    # place, read point and kind instead of one per item there; over whole sites, the
    # rollup per site (one row per site instead of one per location).
    table: sa.Table = history_movements
    if not by_item and not needs_items(query):
        per_site = (
            "location" not in query.group_by
            and "read_point" not in query.group_by
            and query.read_point is None
            and (query.location is None or "." not in query.location)
        )
        table = history_site_movements if per_site else history_place_movements
    rollup = table.c
    group_columns: dict[GroupBy, sa.ColumnElement[Any]] = {
        "site": rollup.site,
        "sku": items.c.sku,
        "kind": rollup.kind,
    }
    if table is not history_site_movements:
        group_columns["location"] = rollup.location
        group_columns["read_point"] = rollup.read_point
    keys = [rollup.bucket, rollup.side, *(group_columns[name] for name in query.group_by)]
    conditions: list[sa.ColumnElement[bool]] = [
        rollup.period == query.period,
        rollup.bucket >= bucket_start(query.since, query.period),
        rollup.bucket < query.until,
    ]
    if query.sku is not None:
        conditions.append(items.c.sku == query.sku)
    if query.gtin is not None:
        conditions.append(items.c.gtin == query.gtin)
    if query.location is not None:
        if "." in query.location:
            conditions.append(in_subtree(rollup.location, query.location))
        else:  # a site: its own column and index
            conditions.append(rollup.site == query.location)
    if query.read_point is not None:
        conditions.append(rollup.read_point == query.read_point)
    if query.kind is not None:
        conditions.append(rollup.kind == query.kind)
    if query.side is not None:
        conditions.append(rollup.side == query.side)
    if query.sites:
        conditions.append(rollup.site.in_(sorted(query.sites)))
    if after is not None:
        conditions.append(
            sa.tuple_(*keys)
            > sa.tuple_(
                *(sa.literal(value, key.type) for key, value in zip(keys, after, strict=True))
            )
        )
    source: sa.FromClause = table
    if needs_items(query):
        source = table.join(items, items.c.id == history_movements.c.item_id)
    return (
        sa.select(*keys, sa.func.sum(rollup.count), sa.func.sum(rollup.quantity))
        .select_from(source)
        .where(*conditions)
        .group_by(*keys)
        .order_by(*keys)
    )


def _movement_row(query: MovementHistoryQuery, row: Sequence[Any]) -> dict[str, Any]:
    values = dict(zip(query.columns, row, strict=True))
    values["count"] = int(values["count"])
    values["quantity"] = int(values["quantity"])
    if "read_point" in values and values["read_point"] == "":
        values["read_point"] = None
    return values


async def movement_history(
    conn: AsyncConnection,
    query: MovementHistoryQuery,
    after: Sequence[Any] | None,
    limit: int,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """One page of buckets (oldest first) after the keys ``after`` (or ``offset`` buckets
    in), and the keys of its last bucket when more follow (None: this is the last page)."""
    select = movement_select(query, after=after).offset(offset).limit(limit + 1)
    rows = (await conn.execute(select)).all()
    page = rows[:limit]
    more = list(page[-1][: len(query.columns) - 2]) if len(rows) > limit else None
    return [_movement_row(query, row) for row in page], more


async def stream_movement_history(
    conn: AsyncConnection, query: MovementHistoryQuery
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every bucket of ``query``, in chunks, from one server-side cursor."""
    result = await conn.stream(movement_select(query))
    async for chunk in result.partitions(STREAM_ROWS):
        yield [_movement_row(query, row) for row in chunk]


@dataclass(frozen=True, slots=True)
class StockDay:
    day: datetime
    site: str
    sku: str
    quantity_in: int
    quantity_out: int
    closing: int


async def stock_history(
    conn: AsyncConnection,
    item_id: int,
    sku: str,
    since: datetime,
    until: datetime,
    site: str | None,
    sites: frozenset[str],
) -> list[StockDay]:
    """Closing stock of one item per site and UTC day, every day from ``since`` up to
    ``until`` (days without movements carry the day before's closing)."""
    stock = history_stock_daily.c
    first = bucket_start(since, "day")
    conditions: list[sa.ColumnElement[bool]] = [stock.item_id == item_id]
    if site is not None:
        conditions.append(stock.site == site)
    if sites:
        conditions.append(stock.site.in_(sorted(sites)))
    opening = {
        row[0]: int(row[1])
        for row in await conn.execute(
            sa.select(stock.site, sa.func.sum(stock.quantity_in - stock.quantity_out))
            .where(*conditions, stock.day < first)
            .group_by(stock.site)
        )
    }
    moves: dict[tuple[str, datetime], tuple[int, int]] = {
        (row[0], row[1]): (int(row[2]), int(row[3]))
        for row in await conn.execute(
            sa.select(stock.site, stock.day, stock.quantity_in, stock.quantity_out).where(
                *conditions, stock.day >= first, stock.day < until
            )
        )
    }
    names = sorted({*opening, *(key[0] for key in moves)} | ({site} if site else set()))
    days: list[StockDay] = []
    for name in names:
        closing = opening.get(name, 0)
        day = first
        while day < until:
            quantity_in, quantity_out = moves.get((name, day), (0, 0))
            closing += quantity_in - quantity_out
            days.append(StockDay(day, name, sku, quantity_in, quantity_out, closing))
            day += timedelta(days=1)
    return days


async def item_of(
    conn: AsyncConnection, sku: str | None, gtin: str | None
) -> tuple[int, str] | None:
    """The id and SKU of the item a SKU or GTIN names."""
    condition = items.c.sku == sku if sku is not None else items.c.gtin == gtin
    row = (await conn.execute(sa.select(items.c.id, items.c.sku).where(condition))).first()
    return (int(row[0]), str(row[1])) if row is not None else None
