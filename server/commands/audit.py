"""The master-data audit trail: who changed which item, category, location, read point,
cost or reorder setting, when, and the values before and after.

Every change is written by ``record_change`` in the transaction that makes it, so the trail
and the data cannot disagree; the table refuses UPDATE and DELETE in the database itself
(revision 0014). Values are the API's own views of the record (``before`` is None for a
creation, ``after`` None for a deletion). A change that changes nothing (the same values
sent again) is not recorded.

Changes made outside the API are not in the trail: read points seeded from
``[[read_points]]`` (the configuration file is their record), and items created by ingest
for an unknown GTIN (the ledger row and the ``unreviewed_item`` alert are theirs).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.schema.costs import Action, Entity, masterdata_changes


def snapshot(value: BaseModel | None) -> dict[str, Any] | None:
    """A record's view as JSON-safe values (times as ISO text)."""
    return value.model_dump(mode="json") if value is not None else None


async def record_change(
    conn: AsyncConnection,
    entity: Entity,
    key: str,
    action: Action,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    actor: str,
    now: datetime,
) -> None:
    """Append one change (nothing when ``before`` equals ``after``)."""
    if before == after:
        return
    await conn.execute(
        sa.insert(masterdata_changes).values(
            entity=entity,
            key=key,
            action=action,
            before=before,
            after=after,
            actor=actor,
            changed_at=now,
        )
    )


async def record_changes(
    conn: AsyncConnection,
    entity: Entity,
    changes: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]],
    actor: str,
    now: datetime,
) -> None:
    """Append many changes of one entity at once: ``(key, before, after)`` each; the action
    follows from which side is None (nothing for a change that changes nothing)."""
    rows = [
        {
            "entity": entity,
            "key": key,
            "action": "create" if before is None else "delete" if after is None else "update",
            "before": before,
            "after": after,
            "actor": actor,
            "changed_at": now,
        }
        for key, before, after in changes
        if before != after
    ]
    if rows:
        await conn.execute(sa.insert(masterdata_changes), rows)


async def record_view_change(
    conn: AsyncConnection,
    entity: Entity,
    key: str,
    before: BaseModel | None,
    after: BaseModel | None,
    actor: str,
    now: datetime,
) -> None:
    """Append the change of one record between two of its views (None where it did not
    exist: before a creation, after a deletion); the action follows, as in
    ``record_changes``."""
    await record_changes(conn, entity, [(key, snapshot(before), snapshot(after))], actor, now)


ViewsByKey = Callable[[AsyncConnection, Sequence[str]], Awaitable[Mapping[str, BaseModel]]]
"""Reads the views of the records of some keys that exist, by key (``items_by_sku``)."""


@contextlib.asynccontextmanager
async def audited(
    conn: AsyncConnection,
    entity: Entity,
    keys: Sequence[str],
    views: ViewsByKey,
    actor: str | None,
    now: datetime,
) -> AsyncIterator[None]:
    """Records in the trail what the writes inside change of the records ``keys``: ``views``
    reads them before and after, and each that changed is one entry. Without ``actor``
    nothing is read or recorded."""
    before = await views(conn, keys) if actor is not None else {}
    yield
    if actor is not None:
        after = await views(conn, keys)
        changes = [(key, snapshot(before.get(key)), snapshot(after.get(key))) for key in keys]
        await record_changes(conn, entity, changes, actor, now)


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    entity: Entity | None = None
    key: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_changes(
    conn: AsyncConnection, where: ChangeFilter, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """Changes matching ``where``, newest first, with ids below ``before_id``."""
    change = masterdata_changes.c
    conditions: list[sa.ColumnElement[bool]] = []
    if where.entity is not None:
        conditions.append(change.entity == where.entity)
    if where.key is not None:
        conditions.append(change.key == where.key)
    if where.actor is not None:
        conditions.append(change.actor == where.actor)
    if where.since is not None:
        conditions.append(change.changed_at >= where.since)
    if where.until is not None:
        conditions.append(change.changed_at < where.until)
    if before_id is not None:
        conditions.append(change.id < before_id)
    rows = await conn.execute(
        sa.select(masterdata_changes).where(*conditions).order_by(change.id.desc()).limit(limit)
    )
    return [dict(row._mapping) for row in rows]
