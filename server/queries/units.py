"""A unit (one tagged item, by EPC): where it is, its item and its newest movements."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.queries.movements import MovementQuery, movements
from server.queries.views import ItemView, UnitView
from server.store.schema.core import items, units
from server.store.sites import site_of


async def unit(
    conn: AsyncConnection, epc: str, history_limit: int, sites: frozenset[str] = frozenset()
) -> UnitView | None:
    """A unit with its item and its newest ``history_limit`` ledger rows.

    With ``sites``, only the rows touching those sites, and None when the unit is not at one
    of them and has no such row.
    """
    row = (
        await conn.execute(
            sa.select(
                units.c.epc,
                units.c.status,
                units.c.location_id,
                units.c.last_event_time,
                units.c.last_event_id,
                items.c.id.label("item_id"),
                items.c.sku,
                items.c.gtin,
                items.c.name,
                items.c.reviewed,
            )
            .join(items, items.c.id == units.c.item_id)
            .where(units.c.epc == epc)
        )
    ).first()
    if row is None:
        return None
    history, _ = await movements(conn, MovementQuery(epc=epc, limit=history_limit, sites=sites))
    if sites and not history and (row.location_id is None or site_of(row.location_id) not in sites):
        return None
    return UnitView(
        epc=row.epc,
        status=row.status,
        location=row.location_id,
        item=ItemView(
            id=row.item_id, sku=row.sku, gtin=row.gtin, name=row.name, reviewed=row.reviewed
        ),
        last_event_time=row.last_event_time,
        last_event_id=row.last_event_id,
        history=history,
    )
