"""Orders as they are read: one with its lines, a page of a kind's, the positions they imply.

What the figures mean is in ``server.rules.orders``; the commands that change orders are in
``server.commands.orders``. A key restricted to sites sees an order when one of its sites
(``location``'s or ``destination``'s) is the key's (``visible_to``); one it may not see is
"not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.order_models import OrderLineView, OrderSummary, OrderView
from server.errors import NotFound
from server.ingest.order_book import add_change
from server.rules.orders import Figure, OrderKindSpec, OrderStatus, positions
from server.store.schema.core import items
from server.store.schema.orders import order_lines, orders


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """Which orders of a kind a list holds (a field left None does not narrow it)."""

    status: OrderStatus | None = None
    site: str | None = None
    """Orders with this site as origin or destination."""
    number: str | None = None
    partner: str | None = None
    item_id: int | None = None
    """Orders with a line of this item."""
    sites: frozenset[str] = frozenset()
    """The caller's sites (empty: all)."""


def visible_to(sites: frozenset[str]) -> sa.ColumnElement[bool]:
    """The orders a key for ``sites`` sees (empty: all)."""
    if not sites:
        return sa.true()
    names = sorted(sites)
    return sa.or_(orders.c.site.in_(names), orders.c.destination_site.in_(names))


def _totals() -> sa.Subquery:
    return (
        sa.select(
            order_lines.c.order_id,
            sa.func.count().label("line_count"),
            sa.func.sum(order_lines.c.quantity).label("quantity"),
            sa.func.sum(order_lines.c.received).label("received"),
            sa.func.sum(order_lines.c.shipped).label("shipped"),
        )
        .group_by(order_lines.c.order_id)
        .subquery("totals")
    )


def _summary_columns(totals: sa.Subquery) -> list[Any]:
    return [
        *orders.c,
        sa.func.coalesce(totals.c.line_count, 0).label("line_count"),
        sa.func.coalesce(totals.c.quantity, 0).label("quantity"),
        sa.func.coalesce(totals.c.received, 0).label("received"),
        sa.func.coalesce(totals.c.shipped, 0).label("shipped"),
    ]


def _line_view(spec: OrderKindSpec, row: Any) -> OrderLineView:
    quantity, received, shipped = int(row.quantity), int(row.received), int(row.shipped)
    filled = received if spec.fills == "received" else shipped
    return OrderLineView(
        line_no=row.line_no,
        sku=row.sku,
        gtin=row.gtin,
        name=row.name,
        quantity=quantity,
        received=received,
        shipped=shipped,
        short=max(quantity - filled, 0),
        over=max(filled - quantity, 0),
        in_transit=max(shipped - received, 0) if spec.has_destination else 0,
    )


async def _lines(conn: AsyncConnection, spec: OrderKindSpec, order_id: int) -> list[OrderLineView]:
    rows = await conn.execute(
        sa.select(
            order_lines.c.line_no,
            order_lines.c.quantity,
            order_lines.c.received,
            order_lines.c.shipped,
            items.c.sku,
            items.c.gtin,
            items.c.name,
        )
        .join(items, items.c.id == order_lines.c.item_id)
        .where(order_lines.c.order_id == order_id)
        .order_by(order_lines.c.line_no)
    )
    return [_line_view(spec, row) for row in rows]


async def get_order(
    conn: AsyncConnection, spec: OrderKindSpec, order_id: int, sites: frozenset[str] = frozenset()
) -> OrderView:
    """The order with its lines.

    Raises:
        NotFound: no order of this kind has that id (or the caller may not see it).
    """
    totals = _totals()
    row = (
        await conn.execute(
            sa.select(*_summary_columns(totals))
            .select_from(orders.outerjoin(totals, totals.c.order_id == orders.c.id))
            .where(orders.c.id == order_id, orders.c.kind == spec.kind, visible_to(sites))
        )
    ).first()
    if row is None:
        raise NotFound(f"no {spec.title} with id {order_id}")
    return OrderView.model_validate({**row._mapping, "lines": await _lines(conn, spec, order_id)})


async def list_orders(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    where: OrderFilter,
    before_id: int | None,
    limit: int,
) -> tuple[list[OrderSummary], bool]:
    """Orders of ``spec``'s kind, newest first, below ``before_id``; and whether more follow."""
    conditions: list[sa.ColumnElement[bool]] = [
        orders.c.kind == spec.kind,
        visible_to(where.sites),
    ]
    if where.status is not None:
        conditions.append(orders.c.status == where.status)
    if where.site is not None:
        conditions.append(
            sa.or_(orders.c.site == where.site, orders.c.destination_site == where.site)
        )
    if where.number is not None:
        conditions.append(orders.c.number == where.number)
    if where.partner is not None:
        conditions.append(orders.c.partner == where.partner)
    if where.item_id is not None:
        conditions.append(
            orders.c.id.in_(
                sa.select(order_lines.c.order_id).where(order_lines.c.item_id == where.item_id)
            )
        )
    if before_id is not None:
        conditions.append(orders.c.id < before_id)
    totals = _totals()
    rows = await conn.execute(
        sa.select(*_summary_columns(totals))
        .select_from(orders.outerjoin(totals, totals.c.order_id == orders.c.id))
        .where(*conditions)
        .order_by(orders.c.id.desc())
        .limit(limit + 1)
    )
    found = [OrderSummary.model_validate(row._mapping) for row in rows]
    return found[:limit], len(found) > limit


async def item_id_of(conn: AsyncConnection, gtin: str | None, sku: str | None) -> int | None:
    """The id of the item with ``gtin`` (14 digits) or ``sku``; None if there is none."""
    condition = items.c.gtin == gtin if gtin is not None else items.c.sku == sku
    found = await conn.scalar(sa.select(items.c.id).where(condition))
    return int(found) if found is not None else None


async def rebuild_positions(conn: AsyncConnection) -> dict[tuple[int, str], dict[Figure, int]]:
    """``order_positions`` recomputed from the open orders (what it should hold), non-zero."""
    rows = await conn.execute(
        sa.select(
            orders.c.kind,
            orders.c.status,
            orders.c.location,
            orders.c.destination,
            order_lines.c.item_id,
            order_lines.c.quantity,
            order_lines.c.received,
            order_lines.c.shipped,
        )
        .join(orders, orders.c.id == order_lines.c.order_id)
        .where(orders.c.status == "open")
    )
    expected: dict[tuple[int, str], dict[Figure, int]] = {}
    for row in rows:
        add_change(
            expected,
            row.item_id,
            positions(
                row.kind,
                row.status,
                row.location,
                row.destination,
                int(row.quantity),
                int(row.received),
                int(row.shipped),
            ),
        )
    return {
        key: {figure: amount for figure, amount in figures.items() if amount}
        for key, figures in expected.items()
        if any(figures.values())
    }


__all__ = [
    "OrderFilter",
    "get_order",
    "item_id_of",
    "list_orders",
    "rebuild_positions",
    "visible_to",
]
