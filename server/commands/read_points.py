"""Read points as data: what a pass at each read point means, in the ``read_points`` table.

Decisions written down here:

- **Config wins, and says so.** At start (``ReadPointCatalog.seed``) every
  ``[[read_points]]`` entry is written to the table with ``source = "config"``,
  overwriting the row of the same id, and config rows no longer in the file are removed.
  The API refuses to change or delete a config read point (409: change ``server.toml``),
  because the next start would silently undo the change. Read points created through the
  API (``source = "api"``) live only in the table and survive restarts. An API read point
  whose id later appears in the config becomes a config one at the next start.
- A read point is stored as its ``[[read_points]]`` definition (validated by
  ``ReadPointSettings``), so the API takes exactly the keys the config file does.
- Its **site** (for keys restricted to sites) is its ``site`` key, or else the site of its
  ``inbound_location``.
- **Ingest reads the table**, not the config: ``ReadPointCatalog.table()`` keeps the table
  in memory and reloads it when this process changed it, or at most ``refresh_s`` after
  another instance did (it asks the database for a cheap fingerprint: row count and newest
  ``updated_at``). If the database cannot be read the last table stays in use.
- The inbound location of an API read point must exist in the location master; a config
  read point's inbound location (and its ancestors) is created at start if missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.locations import missing_locations
from server.config.settings import MAX_READ_POINTS, ReadPointSettings
from server.errors import Conflict, Invalid, NotFound, StoreError
from server.ingest.ledger_writes import ensure_locations
from server.store.database import Store
from server.store.dialect import from_excluded, in_chunks, upsert
from server.store.schema.master import ReadPointSource, read_points
from server.store.sites import site_of
from wire.models import now_utc

log = logging.getLogger(__name__)

REFRESH_S = 5.0
"""How stale another instance's read point changes may be in this instance's ingest."""


class ReadPointView(BaseModel):
    """A read point: its definition (the ``[[read_points]]`` keys) and where it came from."""

    model_config = ConfigDict(frozen=True)

    id: str
    site: str
    """The site it belongs to (its ``site`` key, else its inbound location's site)."""
    definition: ReadPointSettings
    source: ReadPointSource
    created_at: datetime
    updated_at: datetime


def effective_site(point: ReadPointSettings) -> str:
    """The site a read point belongs to, for access control."""
    return point.site if point.site is not None else site_of(point.inbound_location)


def _row(point: ReadPointSettings, source: ReadPointSource, now: datetime) -> dict[str, Any]:
    return {
        "id": point.id,
        "site": effective_site(point),
        "inbound_location": point.inbound_location,
        "definition": point.model_dump(mode="json"),
        "source": source,
        "created_at": now,
        "updated_at": now,
    }


def _view(row: sa.Row[Any]) -> ReadPointView:
    return ReadPointView(
        id=row.id,
        site=row.site,
        definition=ReadPointSettings.model_validate(row.definition),
        source=row.source,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def get_read_point(conn: AsyncConnection, point_id: str) -> ReadPointView | None:
    row = (await conn.execute(sa.select(read_points).where(read_points.c.id == point_id))).first()
    return _view(row) if row is not None else None


async def require_read_point(conn: AsyncConnection, point_id: str) -> ReadPointView:
    found = await get_read_point(conn, point_id)
    if found is None:
        raise NotFound(f"no read point {point_id!r}")
    return found


async def list_read_points(
    conn: AsyncConnection, sites: frozenset[str], after: str | None, limit: int
) -> tuple[list[ReadPointView], bool]:
    """Read points by id after ``after``, only of ``sites`` when given, and whether more."""
    conditions: list[sa.ColumnElement[bool]] = []
    if sites:
        conditions.append(read_points.c.site.in_(sorted(sites)))
    if after is not None:
        conditions.append(read_points.c.id > after)
    rows = await conn.execute(
        sa.select(read_points).where(*conditions).order_by(read_points.c.id).limit(limit + 1)
    )
    found = [_view(row) for row in rows]
    return found[:limit], len(found) > limit


def _require_printable(point: ReadPointSettings) -> None:
    # The config's id pattern (no whitespace) lets control characters through; PostgreSQL
    # cannot store NUL, and an id nobody can type is a mistake anyway.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in point.id):
        raise Invalid("id", "a read point id may not hold control characters")


async def _require_inbound(conn: AsyncConnection, point: ReadPointSettings) -> None:
    if await missing_locations(conn, [point.inbound_location]):
        raise Invalid(
            "inbound_location",
            f"no location {point.inbound_location!r}; create it first",
        )


def _refuse_config(found: ReadPointView, doing: str) -> None:
    if found.source == "config":
        raise Conflict(
            f"read point {found.id!r} is defined in [[read_points]] of the server config; "
            f"{doing} it there (the config wins at every start)"
        )


async def create_read_point(
    conn: AsyncConnection, point: ReadPointSettings, now: datetime
) -> ReadPointView:
    """Add a read point managed through the API.

    Raises:
        Conflict: a read point with that id exists.
        Invalid: its inbound location does not exist.
    """
    _require_printable(point)
    if await get_read_point(conn, point.id) is not None:
        raise Conflict(f"read point {point.id!r} exists already")
    count = await conn.scalar(sa.select(sa.func.count()).select_from(read_points))
    if int(count or 0) >= MAX_READ_POINTS:
        raise Conflict(f"there are {MAX_READ_POINTS} read points already (the limit)")
    await _require_inbound(conn, point)
    await conn.execute(read_points.insert().values(**_row(point, "api", now)))
    return await require_read_point(conn, point.id)


async def replace_read_point(
    conn: AsyncConnection, point: ReadPointSettings, now: datetime
) -> ReadPointView:
    """Replace the definition of an API read point (the id stays).

    Raises:
        NotFound: no such read point.
        Conflict: it is defined in the config.
        Invalid: the inbound location does not exist.
    """
    found = await require_read_point(conn, point.id)
    _refuse_config(found, "change")
    await _require_inbound(conn, point)
    row = _row(point, "api", now)
    del row["created_at"]
    await conn.execute(read_points.update().where(read_points.c.id == point.id).values(**row))
    return await require_read_point(conn, point.id)


async def delete_read_point(conn: AsyncConnection, point_id: str) -> ReadPointView:
    """Remove an API read point; events naming it afterwards are dead-lettered.

    Raises:
        NotFound: no such read point.
        Conflict: it is defined in the config.
    """
    found = await require_read_point(conn, point_id)
    _refuse_config(found, "delete")
    await conn.execute(read_points.delete().where(read_points.c.id == point_id))
    return found


async def seed_read_points(
    conn: AsyncConnection, configured: Sequence[ReadPointSettings], now: datetime
) -> None:
    """Make the table agree with ``[[read_points]]`` (config wins; see module docstring).

    Only rows that differ are written, so an unchanged config leaves ``updated_at`` alone
    and other instances do not reload for nothing.
    """
    await ensure_locations(conn, {point.inbound_location for point in configured}, (), now)
    existing = {
        row.id: row
        for row in await conn.execute(
            sa.select(read_points.c.id, read_points.c.source, read_points.c.definition)
        )
    }
    ids = {point.id for point in configured}
    stale = sorted(
        point_id
        for point_id, row in existing.items()
        if row.source == "config" and point_id not in ids
    )
    for chunk in in_chunks(stale):
        await conn.execute(read_points.delete().where(read_points.c.id.in_(chunk)))
    changed = [
        _row(point, "config", now)
        for point in configured
        if (old := existing.get(point.id)) is None
        or old.source != "config"
        or old.definition != point.model_dump(mode="json")
    ]
    if not changed:
        return
    insert = upsert(conn, read_points)
    # An upsert, so instances starting together do not trip over each other's rows.
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[read_points.c.id],
            set_=from_excluded(
                insert, "site", "inbound_location", "definition", "source", "updated_at"
            ),
        ),
        changed,
    )


async def _fingerprint(conn: AsyncConnection) -> tuple[int, datetime | None]:
    row = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.max(read_points.c.updated_at)).select_from(
                read_points
            )
        )
    ).one()
    return int(row[0]), row[1]


async def _load(conn: AsyncConnection) -> dict[str, ReadPointSettings]:
    table: dict[str, ReadPointSettings] = {}
    for row in await conn.execute(sa.select(read_points.c.id, read_points.c.definition)):
        try:
            table[row.id] = ReadPointSettings.model_validate(row.definition)
        except ValidationError as err:
            # A definition an older or newer version wrote: skip it (its events are
            # dead-lettered as an unknown read point) rather than stop ingest.
            log.error("read point %r in the database is not valid here: %s", row.id, err)
    return table


class ReadPointCatalog:
    """The read point table as ingest uses it: in memory, reloaded when it changed.

    Args:
        store: the database.
        configured: the ``[[read_points]]`` entries; used until the table is first read.
        refresh_s: longest time between checks for changes made by other instances.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        store: Store,
        configured: Sequence[ReadPointSettings],
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._configured = list(configured)
        self._table: Mapping[str, ReadPointSettings] = {p.id: p for p in configured}
        self._fingerprint: tuple[int, datetime | None] | None = None
        self._refresh_s = refresh_s
        self._clock = clock
        self._checked_at: float | None = None

    async def seed(self) -> None:
        """Write the configured read points to the table and load it.

        Raises:
            StoreError: the database failed.
        """
        async with self._store.begin("seeding read points from the config") as conn:
            await seed_read_points(conn, self._configured, now_utc())
        self.invalidate()
        await self.table()

    def invalidate(self) -> None:
        """Reload at the next ``table()`` call (this process changed the table)."""
        self._checked_at = None
        self._fingerprint = None

    async def table(self) -> Mapping[str, ReadPointSettings]:
        """The read points by id, as of at most ``refresh_s`` ago."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._refresh_s:
            return self._table
        self._checked_at = now
        try:
            async with self._store.read("reading read points") as conn:
                fingerprint = await _fingerprint(conn)
                if fingerprint != self._fingerprint:
                    self._table = await _load(conn)
                    self._fingerprint = fingerprint
        except StoreError as err:
            log.warning("read points not reloaded, keeping the last table: %s", err)
        return self._table
