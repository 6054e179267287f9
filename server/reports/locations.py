"""What each location held of each item as of a moment, from the ledger and the balances.

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

from server.store.schema.core import balances, ledger


async def location_quantities(
    conn: AsyncConnection,
    as_of: datetime,
    item_ids: Sequence[int] | None,
    *,
    backwards: bool | None = None,
) -> dict[tuple[int, str], int]:
    """What each location held of each item as of ``as_of`` (item id, location -> quantity).

    Summed forwards (the ledger rows before ``as_of``) or backwards (the balances now, less
    the rows from ``as_of`` on; balances are the ledger's sums, ``stockgate server
    check-ledger``), in one statement either way (one snapshot); None: backwards when
    ``as_of`` lies in the later half of the ledger's time span, so the rows read are about
    the fewer of the two (a value as of today reads the balances and almost no rows).
    """
    row = ledger.c
    if backwards is None:
        first, last = (
            await conn.execute(
                sa.select(
                    sa.select(sa.func.min(row.event_time)).scalar_subquery(),
                    sa.select(sa.func.max(row.event_time)).scalar_subquery(),
                )
            )
        ).one()
        backwards = first is not None and as_of >= first + (last - first) / 2
    moved = (row.event_time >= as_of) if backwards else (row.event_time < as_of)
    sign = -1 if backwards else 1
    parts: list[sa.Select[Any]] = [
        sa.select(
            row.item_id, column.label("location"), (factor * sign * row.quantity).label("q")
        ).where(moved, column.is_not(None))
        for column, factor in ((row.to_location, 1), (row.from_location, -1))
    ]
    if backwards:
        parts.append(sa.select(balances.c.item_id, balances.c.location_id, balances.c.on_hand))
    if item_ids is not None:
        wanted = sorted(item_ids)
        parts = [part.where(part.selected_columns[0].in_(wanted)) for part in parts]
    union = sa.union_all(*parts).subquery("moved")
    quantities: dict[tuple[int, str], int] = {}
    for item_id, location, quantity in await conn.execute(
        sa.select(union.c.item_id, union.c.location, sa.func.sum(union.c.q)).group_by(
            union.c.item_id, union.c.location
        )
    ):
        quantities[(int(item_id), str(location))] = int(quantity)
    return quantities
