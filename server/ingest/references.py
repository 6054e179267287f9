"""The items and locations a write names, held until its transaction ends (PostgreSQL).

On PostgreSQL the references of ledger rows, units and balances to items and locations are
not foreign keys (``server.store.schema.core.HELD_BY_WRITERS``, revision 0022): a foreign
key there looks up and locks the parent row for every row written, which was a third of
PostgreSQL's work in ingest. Their writers (``server.ingest.ledger_writes``,
``server.ingest.order_book``) call ``hold`` in their transaction, before writing, with
every item and location the rows name. It takes the lock the foreign key's check took
(``FOR KEY SHARE``: an edit of the row goes on, a delete waits for the commit) once per
statement, on each row once, and raises ``IntegrityError`` naming what does not exist, as
the foreign key did. Deleting an item or a location locks its row before it looks for
references (``server.commands.items``, ``server.commands.locations``): it waits for every
writer holding it, and then sees their rows (``lock_for_delete``). SQLite keeps its foreign keys
(an index lookup in the writer's own process): ``hold`` does nothing there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

HOLD = (
    "WITH held_items AS ("
    " SELECT id FROM items WHERE id IN (SELECT unnest(CAST($1 AS BIGINT[]))) FOR KEY SHARE"
    "), held_locations AS ("
    " SELECT id FROM locations"
    " WHERE id IN (SELECT unnest(CAST($2 AS VARCHAR[]))) FOR KEY SHARE"
    ") "
    "SELECT 'item', CAST(wanted AS VARCHAR) FROM unnest(CAST($1 AS BIGINT[])) AS wanted"
    " WHERE wanted NOT IN (SELECT id FROM held_items) "
    "UNION ALL "
    "SELECT 'location', wanted FROM unnest(CAST($2 AS VARCHAR[])) AS wanted"
    " WHERE wanted NOT IN (SELECT id FROM held_locations)"
)
"""Lock the items and locations named, and list those that are missing: one round trip."""


class MissingReference(Exception):
    """What ``hold`` found missing; the ``orig`` of the ``IntegrityError`` it raises, with
    the SQLSTATE of a foreign key violation."""

    sqlstate = "23503"


async def hold(conn: AsyncConnection, item_ids: Iterable[int], locations: Iterable[str]) -> None:
    """Lock ``item_ids`` and ``locations`` until ``conn``'s transaction ends (PostgreSQL).

    Both are read only on PostgreSQL, so a caller may pass generators: on SQLite (its
    foreign keys hold) ingest's hot path builds nothing for this.

    Raises:
        sqlalchemy.exc.IntegrityError: one of them does not exist (deleted by a transaction
            that committed first, say); the caller's transaction must not commit.
    """
    if conn.dialect.name != "postgresql":
        return
    items, places = sorted(set(item_ids)), sorted(set(locations))
    if not (items or places):
        return
    result = await conn.exec_driver_sql(HOLD, (items, places))
    missing: list[tuple[Any, ...]] = [tuple(row) for row in result]
    if missing:
        named = ", ".join(f"{kind} {key!r}" for kind, key in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise sa.exc.IntegrityError(
            "hold references",
            None,
            MissingReference(f"no such {named}{more}: a row written may not name it"),
        )


async def lock_for_delete(conn: AsyncConnection, key: sa.Column[Any], value: object) -> None:
    """Before deleting the item or location whose id (``key``) is ``value``, and before
    looking for what refers to it: lock its row, so every writer holding it (``hold``)
    commits first and its rows are then seen."""
    await conn.execute(sa.select(key).where(key == value).with_for_update())
