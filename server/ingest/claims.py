"""Claiming event ids: the exactly-once guard of every path that writes stock.

The claim is made in the transaction that writes the event's rows (docs/architecture.md
§4), so an id is seen exactly when its rows are committed. With several server instances
on one PostgreSQL the insert itself decides: it runs ``ON CONFLICT DO NOTHING RETURNING``,
the ids the insert returns are the ones this transaction owns (the statement hands back
the others), and a concurrent transaction inserting the same id waits on the unique index
and then does not get it, so it skips them. SQLite has one writer: the ids seen before are
read, and the others inserted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.dialect import execute_rows, one_of
from server.store.schema.core import seen_events

_CLAIM = sa.text(
    "WITH wanted AS (SELECT unnest(:event_ids) AS event_id), "
    "claimed AS (INSERT INTO seen_events (event_id, seen_at) "
    "SELECT event_id, :seen_at FROM wanted ON CONFLICT DO NOTHING RETURNING event_id) "
    "SELECT event_id FROM wanted WHERE event_id NOT IN (SELECT event_id FROM claimed)"
).bindparams(
    sa.bindparam("event_ids", type_=postgresql.ARRAY(seen_events.c.event_id.type)),
    sa.bindparam("seen_at", type_=seen_events.c.seen_at.type),
)
"""PostgreSQL's claim: insert the ids, get back the ones another transaction had (usually
none: returning the thousands this one won cost the event loop a row object each)."""


def seen_query(
    conn: AsyncConnection, event_ids: Sequence[str]
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """The read of which of ``event_ids`` were seen already, and its parameters."""
    condition, params = one_of(conn, seen_events.c.event_id, "event_ids", event_ids)
    return sa.select(seen_events.c.event_id).where(condition), params


async def seen_before(conn: AsyncConnection, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` were seen already (a read: it claims nothing)."""
    if not event_ids:
        return set()
    seen = await conn.execute(*seen_query(conn, event_ids))
    return set(seen.scalars())


async def claim_events(
    conn: AsyncConnection,
    event_ids: Sequence[str],
    now: datetime,
    *,
    seen: Collection[str] | None = None,
) -> set[str]:
    """Record ``event_ids`` (distinct) as seen; returns those that were not seen before.

    Args:
        seen: SQLite: the ids seen before, read earlier in this transaction (with the ids
            it claimed since added: ``server.ingest.prefetch``); None: read them now.
    """
    if not event_ids:
        return set()
    if conn.dialect.name == "sqlite":
        # One writer: the transaction holds SQLite's write lock, so the ids seen before
        # (usually none) cannot change between this read and the insert of the others.
        if seen is None:
            seen = await seen_before(conn, event_ids)
        fresh = set(event_ids).difference(seen)
        await execute_rows(
            conn,
            "seen events",
            lambda _: seen_events.insert(),
            ("event_id", "seen_at"),
            [(event_id, now) for event_id in fresh],
        )
        return fresh
    # Several instances: the insert itself decides, and returns the ids this one did not
    # win. One statement over an array of the ids (not a row of parameters per id).
    result = await conn.execute(_CLAIM, {"event_ids": list(event_ids), "seen_at": now})
    return set(event_ids).difference(result.scalars())
