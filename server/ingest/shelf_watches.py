"""Shelf watches kept as a batch applies (``server.ingest.shelves`` says what they are for).

Called by ``server.ingest.apply.apply_events`` inside the batch's transaction, after the plan's
ledger rows and unit states are written.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.settings import ReadPointSettings
from server.rules.model import Plan
from server.store.dialect import one_of, upsert
from server.store.schema.shelves import shelf_watches


def watching(read_points: Mapping[str, ReadPointSettings]) -> bool:
    """Some read point is a watched shelf (has ``missing_after_s``)."""
    return any(point.missing_after_s is not None for point in read_points.values())


async def record_watches(conn: AsyncConnection, plan: Plan, item_ids: Mapping[str, int]) -> None:
    """Remove the watches of units the batch read after they left; start the new ones."""
    if plan.sightings:
        condition, params = one_of(conn, shelf_watches.c.epc, "epcs", sorted(plan.sightings))
        rows = await conn.execute(
            sa.select(
                shelf_watches.c.epc,
                shelf_watches.c.departed_at,
                shelf_watches.c.departure_event_id,
            ).where(condition),
            params,
        )
        for epc, departed_at, event_id in rows.all():
            if plan.sightings[epc] > (departed_at, event_id):
                await conn.execute(
                    shelf_watches.delete().where(
                        shelf_watches.c.epc == epc,
                        shelf_watches.c.departure_event_id == event_id,
                    )
                )
    if plan.departures:
        insert = upsert(conn, shelf_watches)
        statement = insert.on_conflict_do_update(
            index_elements=[shelf_watches.c.epc],
            set_={
                column: insert.excluded[column]
                for column in (
                    "item_id",
                    "read_point",
                    "location_id",
                    "departed_at",
                    "departure_event_id",
                    "due_at",
                )
            },
            where=shelf_watches.c.departed_at < insert.excluded.departed_at,
        )
        await conn.execute(
            statement,
            [
                {
                    "epc": gone.epc,
                    "item_id": item_ids[gone.item],
                    "read_point": gone.read_point,
                    "location_id": gone.location,
                    "departed_at": gone.departed_at,
                    "departure_event_id": gone.event_id,
                    "due_at": gone.due_at,
                }
                for gone in sorted(plan.departures.values(), key=lambda d: d.epc)
            ],
        )


__all__ = ["record_watches", "watching"]
