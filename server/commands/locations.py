"""Locations in the store: read, look up many, list, create, rename, delete; writers run
inside the caller's transaction (the rules of the tree are in ``server.commands.masterdata``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.masterdata import LocationChanges, LocationFields, LocationView, parent_of
from server.errors import Conflict, Invalid, NotFound
from server.ingest.ledger_writes import location_kind
from server.ingest.references import lock_for_delete
from server.store.database import refused_on_conflict
from server.store.rows import first_view, keyset_page, refuse_while_referenced, rows_with_keys
from server.store.schema.core import balances, ledger, locations, units
from server.store.schema.master import read_points
from server.store.sites import in_sites

_LOCATION_COLUMNS = tuple(locations.c[name] for name in LocationView.model_fields)


@dataclass(frozen=True, slots=True)
class LocationFilter:
    under: str | None = None
    """A location id: that location and its subtree."""
    kind: str | None = None
    sites: frozenset[str] = frozenset()
    """Only these sites (empty: every site)."""


async def get_location(conn: AsyncConnection, location: str) -> LocationView | None:
    query = sa.select(*_LOCATION_COLUMNS).where(locations.c.id == location)
    return await first_view(conn, query, LocationView)


async def locations_by_id(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, LocationView]:
    """The locations of ``ids`` that exist, by id."""
    rows = await rows_with_keys(conn, sa.select(*_LOCATION_COLUMNS), locations.c.id, ids)
    views = (LocationView.model_validate(row._mapping) for row in rows)
    return {view.id: view for view in views}


async def require_location(conn: AsyncConnection, location: str) -> LocationView:
    found = await get_location(conn, location)
    if found is None:
        raise NotFound(f"no location {location!r}")
    return found


async def missing_locations(conn: AsyncConnection, wanted: Sequence[str]) -> list[str]:
    """The ids among ``wanted`` that are not in the location table, sorted."""
    rows = await rows_with_keys(conn, sa.select(locations.c.id), locations.c.id, wanted)
    return sorted(set(wanted) - {row.id for row in rows})


async def list_locations(
    conn: AsyncConnection, where: LocationFilter, after: str | None, limit: int
) -> tuple[list[LocationView], bool]:
    """Locations by id (parents before their children) after ``after``, and whether more."""
    conditions: list[sa.ColumnElement[bool]] = []
    if where.under is not None:
        conditions.append(in_sites(locations.c.id, [where.under]))
    if where.kind is not None:
        conditions.append(locations.c.kind == where.kind)
    if where.sites:
        conditions.append(in_sites(locations.c.id, where.sites))
    query = sa.select(*_LOCATION_COLUMNS).where(*conditions)
    return await keyset_page(conn, query, locations.c.id, LocationView, after, limit)


async def create_location(
    conn: AsyncConnection, fields: LocationFields, now: datetime
) -> LocationView:
    """Add a location under an existing parent.

    Raises:
        Conflict: the location exists already.
        Invalid: its parent does not exist.
    """
    if await get_location(conn, fields.id) is not None:
        raise Conflict(f"location {fields.id!r} exists already")
    parent = parent_of(fields.id)
    if parent is not None and await get_location(conn, parent) is None:
        raise Invalid("id", f"parent location {parent!r} does not exist; create it first")
    async with refused_on_conflict(f"location {fields.id!r}"):
        await conn.execute(
            locations.insert().values(
                id=fields.id,
                parent=parent,
                kind=location_kind(fields.id),
                name=fields.name,
                sgln=fields.sgln,
                created_at=now,
                updated_at=now,
            )
        )
    return await require_location(conn, fields.id)


async def rename_location(
    conn: AsyncConnection, location: str, changes: LocationChanges, now: datetime
) -> LocationView:
    """Change a location's name (and its SGLN, when the changes name one).

    Raises:
        NotFound: no such location.
    """
    await require_location(conn, location)
    await conn.execute(
        locations.update()
        .where(locations.c.id == location)
        .values(
            name=changes.name,
            updated_at=now,
            **({"sgln": changes.sgln} if "sgln" in changes.model_fields_set else {}),
        )
    )
    return await require_location(conn, location)


async def delete_location(conn: AsyncConnection, location: str) -> None:
    """Remove a location nothing refers to.

    Raises:
        NotFound: no such location.
        Conflict: it has children, ledger rows, balances, units or read points.
    """
    await require_location(conn, location)
    await lock_for_delete(conn, locations.c.id, location)
    await refuse_while_referenced(
        conn,
        [
            (
                f"location {location!r} has child locations; delete them first",
                sa.select(locations.c.id).where(locations.c.parent == location),
            ),
            (
                f"location {location!r} has ledger rows; locations stock moved through are "
                "never deleted",
                sa.select(ledger.c.id).where(
                    sa.or_(ledger.c.from_location == location, ledger.c.to_location == location)
                ),
            ),
            (
                f"location {location!r} has balances",
                sa.select(balances.c.item_id).where(balances.c.location_id == location),
            ),
            (
                f"location {location!r} has units",
                sa.select(units.c.epc).where(units.c.location_id == location),
            ),
            (
                f"location {location!r} is the inbound location of a read point",
                sa.select(read_points.c.id).where(read_points.c.inbound_location == location),
            ),
        ],
    )
    async with refused_on_conflict(
        Conflict(f"location {location!r} is still referred to; it cannot be deleted")
    ):
        await conn.execute(locations.delete().where(locations.c.id == location))
