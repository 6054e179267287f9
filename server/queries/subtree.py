"""A location and everything under it, as SQL conditions the location indexes serve.

A location filter means the location and its subtree: ``wh1`` matches ``wh1`` and anything
under ``wh1.``. Location ids are compared bytewise (see ``server.store.schema.core``), so the
subtree is the half-open range ``["wh1.", "wh1/")`` (``/`` is the character after ``.``) and an
index on the column serves it on both databases. A query that plans its own way through a
subtree (``server.queries.movements``, ``server.queries.stock``) asks for the subtree's
locations when there are few (``subtree_of``), or hides a column from its index
(``unindexed``) when the index would be the wrong way in.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.schema.core import locations


def in_subtree(column: sa.ColumnElement[str], location: str) -> sa.ColumnElement[bool]:
    """``column`` is ``location`` or lies under it."""
    return sa.or_(
        column == location,
        sa.and_(column >= f"{location}.", column < f"{location}/"),
    )


SUBTREE_BRANCH_LOCATIONS = 32
"""A location filter whose subtree has at most this many locations is answered by one
index scan per location and side (see ``server.queries.movements``)."""


async def subtree_of(conn: AsyncConnection, location: str) -> list[str] | None:
    """The locations of ``location``'s subtree, or None when there are too many to branch."""
    rows = await conn.execute(
        sa.select(locations.c.id)
        .where(in_subtree(locations.c.id, location))
        .order_by(locations.c.id)
        .limit(SUBTREE_BRANCH_LOCATIONS + 1)
    )
    found = list(rows.scalars())
    return found if len(found) <= SUBTREE_BRANCH_LOCATIONS else None


def unindexed(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``column`` as an expression no index serves (same value, same bytewise order)."""
    return column.op("||")(sa.literal("", sa.String()))
