"""The lines of an order: add one, change its quantity, remove it.

Like every writer of ``server.commands.orders``, each runs in the caller's transaction, locks
the order first and keeps ``order_positions`` in step.

Decisions written down here:

- Line numbers are given by the store (1, 2, ...) and never reused within an order. A line
  may be removed only while nothing was received or shipped on it; its quantity may be
  changed (also below what was received: it is then over-received).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.order_models import MAX_LINES, LineIn, OrderView
from server.commands.orders import (
    LockedOrder,
    check_editable,
    lock_order,
    resolve_lines,
    touch_order,
)
from server.errors import Conflict, NotFound
from server.ingest.order_book import add_change, shift_positions
from server.queries.orders import get_order
from server.rules.orders import Figure, OrderKindSpec, position_delta, positions
from server.store.schema.orders import order_lines, orders


async def _line(conn: AsyncConnection, order_id: int, line_no: int) -> Any:
    row = (
        await conn.execute(
            sa.select(order_lines).where(
                order_lines.c.order_id == order_id, order_lines.c.line_no == line_no
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"order {order_id} has no line {line_no}")
    return row


def _line_positions(
    spec: OrderKindSpec, order: LockedOrder, quantity: int, received: int, shipped: int
) -> dict[tuple[str, Figure], int]:
    return positions(
        spec.kind, order.status, order.location, order.destination, quantity, received, shipped
    )


async def add_line(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order_id: int,
    line: LineIn,
    actor: str,
    now: datetime,
    sites: frozenset[str] = frozenset(),
) -> OrderView:
    """Add a line to a draft or open order (numbered after the highest so far).

    Raises:
        NotFound, Forbidden, Conflict: as for ``change_order``; Conflict also when the order
            holds ``MAX_LINES`` lines.
        Invalid: no such item.
    """
    order = await lock_order(conn, spec, order_id, sites)
    check_editable(spec, order)
    [item_id] = await resolve_lines(conn, [line])
    count = await conn.scalar(sa.select(sa.func.count()).where(order_lines.c.order_id == order.id))
    if (count or 0) >= MAX_LINES:
        raise Conflict(f"{spec.title} {order.number} holds {MAX_LINES} lines, the most it may")
    # The order row is locked, so the number is ours; removed lines' numbers stay retired.
    line_no = await conn.scalar(
        orders.update()
        .where(orders.c.id == order.id)
        .values(last_line_no=orders.c.last_line_no + 1)
        .returning(orders.c.last_line_no)
    )
    await conn.execute(
        order_lines.insert().values(
            order_id=order.id,
            line_no=line_no,
            item_id=item_id,
            quantity=line.quantity,
            received=0,
            shipped=0,
        )
    )
    added = _line_positions(spec, order, line.quantity, 0, 0)
    return await _line_changed(conn, spec, order, item_id, added, actor, now)


async def change_line(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order_id: int,
    line_no: int,
    quantity: int,
    actor: str,
    now: datetime,
    sites: frozenset[str] = frozenset(),
) -> OrderView:
    """Set a line's quantity (draft or open orders).

    Raises:
        NotFound: no such order or line. Forbidden, Conflict: as for ``change_order``.
    """
    order = await lock_order(conn, spec, order_id, sites)
    check_editable(spec, order)
    row = await _line(conn, order.id, line_no)
    received, shipped = int(row.received), int(row.shipped)
    before = _line_positions(spec, order, int(row.quantity), received, shipped)
    after = _line_positions(spec, order, quantity, received, shipped)
    await conn.execute(
        order_lines.update().where(order_lines.c.id == row.id).values(quantity=quantity)
    )
    delta = position_delta(before, after)
    return await _line_changed(conn, spec, order, row.item_id, delta, actor, now)


async def remove_line(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order_id: int,
    line_no: int,
    actor: str,
    now: datetime,
    sites: frozenset[str] = frozenset(),
) -> OrderView:
    """Remove a line nothing was received or shipped on (draft or open orders).

    Raises:
        NotFound: no such order or line. Forbidden: as for ``change_order``.
        Conflict: the order can no longer change, or the line has receipts or shipments.
    """
    order = await lock_order(conn, spec, order_id, sites)
    check_editable(spec, order)
    row = await _line(conn, order.id, line_no)
    if row.received or row.shipped:
        raise Conflict(
            f"line {line_no} of {spec.title} {order.number} has goods received or shipped on "
            "it; change its quantity instead"
        )
    removed = _line_positions(spec, order, int(row.quantity), 0, 0)
    await conn.execute(order_lines.delete().where(order_lines.c.id == row.id))
    delta = position_delta(removed, {})
    return await _line_changed(conn, spec, order, row.item_id, delta, actor, now)


async def _line_changed(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order: LockedOrder,
    item_id: int,
    delta: Mapping[tuple[str, Figure], int],
    actor: str,
    now: datetime,
) -> OrderView:
    """After a line of ``order`` changed by ``delta``: its item's open positions shifted, the
    order touched, and the order as it is now."""
    changes: dict[tuple[int, str], dict[Figure, int]] = {}
    add_change(changes, item_id, delta)
    await shift_positions(conn, changes)
    await touch_order(conn, order.id, actor, now)
    return await get_order(conn, spec, order.id)


__all__ = ["add_line", "change_line", "remove_line"]
