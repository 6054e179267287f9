"""Open order lines for ingest, and the counters and stock figures that follow from them.

Ingest loads the open lines of the items a batch names (``load_order_book``), the rules
count the batch's movements against them (``server.rules.orders.OrderBook``), and
``apply_line_deltas`` adds what they counted to the lines' ``received`` and ``shipped``
and the resulting change of on order, allocated and in transit to ``order_positions``.

Concurrency (several server instances on one PostgreSQL): the orders of the loaded lines are
locked ``FOR SHARE`` until the batch commits, so an operator closing or cancelling one of
them (``FOR UPDATE`` in ``server.commands.orders``) waits for the batch, and the batch never counts
against an order that is no longer open. Counters are increments (``received = received +
n ... RETURNING``), and a line's figures before and after are computed from the values the
update returns under its row lock, so concurrent batches on one line commute. Position rows
are upserted as increments in key order, as balances are. SQLite has one writer at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.ingest.references import hold
from server.rules.model import AlertSpec, LineDelta, OpenLine
from server.rules.orders import Figure, overfill_alerts, position_delta, positions
from server.rules.policy import DEFAULT_POLICY, Policy
from server.store.dialect import in_chunks, upsert
from server.store.schema.core import balances
from server.store.schema.orders import order_lines, order_positions, orders

FIGURES: tuple[Figure, ...] = ("on_order", "allocated", "in_transit")

PositionChanges = Mapping[tuple[int, str], Mapping[Figure, int]]
"""(item id, location) -> figure -> amount to add."""


async def load_order_book(
    conn: AsyncConnection, item_ids: Mapping[str, int]
) -> tuple[OpenLine, ...]:
    """The lines of open orders for the items ``item_ids`` (``ItemKey.ref`` -> id).

    Locks those orders ``FOR SHARE`` on PostgreSQL (see the module docstring).
    """
    refs = {item_id: ref for ref, item_id in item_ids.items()}
    ids = sorted(refs)
    found: list[OpenLine] = []
    for chunk in in_chunks(ids):
        rows = await conn.execute(
            sa.select(
                order_lines.c.id,
                order_lines.c.order_id,
                orders.c.kind,
                orders.c.number,
                order_lines.c.line_no,
                order_lines.c.item_id,
                orders.c.location,
                orders.c.destination,
                order_lines.c.quantity,
                order_lines.c.received,
                order_lines.c.shipped,
            )
            .join(orders, orders.c.id == order_lines.c.order_id)
            .where(
                orders.c.status == "open",
                order_lines.c.item_id.in_(chunk),
            )
            .order_by(order_lines.c.order_id, order_lines.c.line_no)
            .with_for_update(read=True, of=orders)
        )
        found.extend(
            OpenLine(
                line_id=row.id,
                order_id=row.order_id,
                kind=row.kind,
                number=row.number,
                line_no=row.line_no,
                item=refs[row.item_id],
                item_id=row.item_id,
                location=row.location,
                destination=row.destination,
                quantity=row.quantity,
                received=row.received,
                shipped=row.shipped,
            )
            for row in rows
        )
    return tuple(found)


async def load_ordering_sites(
    conn: AsyncConnection,
) -> frozenset[tuple[Literal["in", "out"], str]]:
    """(direction, site) of sites with an open order receiving there or shipping from there."""
    rows = await conn.execute(
        sa.select(orders.c.kind, orders.c.site, orders.c.destination_site)
        .where(orders.c.status == "open")
        .distinct()
    )
    sites: set[tuple[Literal["in", "out"], str]] = set()
    for kind, site, destination_site in rows:
        if kind == "purchase":
            sites.add(("in", site))
        else:
            sites.add(("out", site))
        if kind == "transfer" and destination_site is not None:
            sites.add(("in", destination_site))
    return frozenset(sites)


async def shift_positions(conn: AsyncConnection, changes: PositionChanges) -> None:
    """Add ``changes`` to ``order_positions``; every key gets a ``balances`` row too."""
    rows = [
        {
            "item_id": item_id,
            "location_id": location,
            **{figure: int(amounts.get(figure, 0)) for figure in FIGURES},
        }
        for (item_id, location), amounts in sorted(changes.items())
        if any(amounts.values())
    ]
    if not rows:
        return
    await hold(conn, (row["item_id"] for row in rows), (row["location_id"] for row in rows))
    # A zero balance row, so the stock listing (which starts from balances) shows the key.
    await conn.execute(
        upsert(conn, balances).on_conflict_do_nothing(),
        [
            {"item_id": row["item_id"], "location_id": row["location_id"], "on_hand": 0}
            for row in rows
        ],
    )
    insert = upsert(conn, order_positions)
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[order_positions.c.item_id, order_positions.c.location_id],
            set_={
                figure: order_positions.c[figure] + insert.excluded[figure] for figure in FIGURES
            },
        ),
        rows,
    )


def add_change(
    changes: dict[tuple[int, str], dict[Figure, int]],
    item_id: int,
    delta: Mapping[tuple[str, Figure], int],
) -> None:
    """Fold one line's ``position_delta`` into ``changes``."""
    for (location, figure), amount in delta.items():
        changes.setdefault((item_id, location), defaultdict(int))[figure] += amount


async def apply_line_deltas(
    conn: AsyncConnection,
    deltas: Sequence[LineDelta],
    lines: Sequence[OpenLine],
    policy: Policy = DEFAULT_POLICY,
) -> list[AlertSpec]:
    """Add a batch's counts to its lines, and the change they make to ``order_positions``.

    Returns:
        The over-receipt and over-shipment alerts the new counters call for.
    """
    alerts: list[AlertSpec] = []
    if not deltas:
        return alerts
    by_id = {line.line_id: line for line in lines}
    changes: dict[tuple[int, str], dict[Figure, int]] = {}
    for delta in sorted(deltas, key=lambda d: d.line_id):
        row = (
            await conn.execute(
                order_lines.update()
                .where(order_lines.c.id == delta.line_id)
                .values(
                    received=order_lines.c.received + delta.received,
                    shipped=order_lines.c.shipped + delta.shipped,
                )
                .returning(order_lines.c.quantity, order_lines.c.received, order_lines.c.shipped)
            )
        ).first()
        line = by_id.get(delta.line_id)
        if row is None or line is None:
            continue  # cannot happen while the order is locked; nothing to shift then
        quantity, received, shipped = int(row.quantity), int(row.received), int(row.shipped)
        before = positions(
            line.kind,
            "open",
            line.location,
            line.destination,
            quantity,
            received - delta.received,
            shipped - delta.shipped,
        )
        after = positions(
            line.kind, "open", line.location, line.destination, quantity, received, shipped
        )
        add_change(changes, line.item_id, position_delta(before, after))
        alerts.extend(overfill_alerts(line, delta, quantity, received, shipped, policy))
    await shift_positions(conn, changes)
    return alerts
