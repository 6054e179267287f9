"""Keeping what each location held of each item at snapshots, every ``SNAPSHOT_DAYS`` days.

A snapshot at ``boundary`` (a UTC midnight every ``SNAPSHOT_DAYS`` days from the Unix epoch)
holds, for every (item, location) whose quantity is not zero, the sum of the ledger rows
with an event time before ``boundary`` and an id up to the books' position
(``server.reports.book_checkpoints.position``): the snapshots are kept in the books'
transactions, so one position says which rows both hold. Stock by location as of a moment
(``server.reports.locations``) starts from the nearest snapshot and sums at most half a
snapshot step of ledger rows, instead of the ledger from its first row.

A follower step with rows up to id ``upto``:

1. a row with an event time before the newest snapshot (a late event) is added to every
   snapshot after its time (a row before the first snapshot makes the snapshots at the
   boundaries between them, as a rebuild would have them);
2. once the rows reach a boundary after the newest snapshot (and the clock has passed it),
   each boundary passed, up to ``SNAPSHOTS_PER_STEP`` of them, gets its snapshot: the one
   before plus the ledger rows between them, in one ``INSERT ... SELECT``.

Why a whole snapshot every four weeks rather than the changed rows every day, as the books
are kept: a report by location reads every (item, location), and finding each one's newest
row at or before a moment is one index look each (about 80,000 at the benchmark's ten
million rows); one range of the key per snapshot reads them in one pass, and four weeks
keep the table to a few full copies of ``balances`` a year.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.reports.book_checkpoints import BookRow
from server.reports.book_state import boundaries_between, boundary_at_or_before
from server.store.dialect import execute_many, upsert
from server.store.schema.core import UtcDateTime, ledger
from server.store.schema.history import location_snapshot_marks, location_snapshots

SNAPSHOT_DAYS: Final = 28
SNAPSHOT_STEP: Final = timedelta(days=SNAPSHOT_DAYS)
SNAPSHOTS_PER_STEP: Final = 2
"""New snapshots made per follower step (bounds a step's time when a database that had
none catches up; ``rebuild-history`` makes them all at once)."""

Held = dict[tuple[int, str], int]
"""(item id, location) -> quantity."""


class SnapshotRow(BookRow, Protocol):
    """What a follower step needs of a ledger row (``server.history.follow.LedgerRow``)."""

    @property
    def quantity(self) -> int: ...


def moved(
    *conditions: sa.ColumnElement[bool], sign: int = 1, item_ids: Sequence[int] | None = None
) -> list[sa.Select[Any]]:
    """Selects of (item_id, location, q) for the ledger rows matching ``conditions``: ``q``
    is ``sign`` times the quantity into ``to_location`` and minus it out of
    ``from_location`` (two selects, for a ``UNION ALL``)."""
    row = ledger.c
    parts = [
        sa.select(
            row.item_id.label("item_id"),
            column.label("location"),
            (factor * sign * row.quantity).label("q"),
        ).where(*conditions, column.is_not(None))
        for column, factor in ((row.to_location, 1), (row.from_location, -1))
    ]
    if item_ids is not None:
        wanted = sorted(item_ids)
        parts = [part.where(row.item_id.in_(wanted)) for part in parts]
    return parts


def held_at(boundary: datetime, item_ids: Sequence[int] | None = None) -> sa.Select[Any]:
    """The snapshot at ``boundary`` as (item_id, location, q) rows."""
    snap = location_snapshots.c
    query = sa.select(snap.item_id, snap.location, snap.quantity.label("q")).where(
        snap.boundary == boundary
    )
    if item_ids is not None:
        query = query.where(snap.item_id.in_(sorted(item_ids)))
    return query


def summed(parts: Sequence[sa.Select[Any]]) -> sa.Select[Any]:
    """(item_id, location, quantity) summed over the ``UNION ALL`` of ``parts``."""
    union = sa.union_all(*parts).subquery("moved")
    return sa.select(union.c.item_id, union.c.location, sa.func.sum(union.c.q)).group_by(
        union.c.item_id, union.c.location
    )


def _time(value: datetime) -> sa.ColumnElement[datetime]:
    return sa.literal(value, UtcDateTime())


async def marks(conn: AsyncConnection) -> list[datetime]:
    """The boundaries with a snapshot, oldest first."""
    mark = location_snapshot_marks.c
    return [row[0] for row in await conn.execute(sa.select(mark.boundary).order_by(mark.boundary))]


def _between(previous: datetime | None, boundary: datetime, upto: int) -> list[sa.Select[Any]]:
    """``moved`` for the ledger rows up to ``upto`` from ``previous`` (None: from the first
    row) to ``boundary``."""
    row = ledger.c
    window = [row.id <= upto, row.event_time < boundary]
    if previous is not None:
        window.append(row.event_time >= previous)
    return moved(*window)


async def _take(
    conn: AsyncConnection, boundaries: Sequence[datetime], previous: datetime | None, upto: int
) -> None:
    """The snapshots at ``boundaries`` (ascending), each from the one before (the first
    from the one at ``previous``; None: from nothing) and the ledger rows up to ``upto``
    between them."""
    for boundary in boundaries:
        await _take_one(conn, boundary, previous, upto)
        previous = boundary


async def _take_one(
    conn: AsyncConnection, boundary: datetime, previous: datetime | None, upto: int
) -> None:
    parts = _between(previous, boundary, upto)
    if previous is not None:
        parts.append(held_at(previous))
    total = summed(parts).subquery("total")
    quantity = total.c[2]
    await conn.execute(
        sa.insert(location_snapshots).from_select(
            ["boundary", "item_id", "location", "quantity"],
            sa.select(_time(boundary), total.c.item_id, total.c.location, quantity).where(
                quantity != 0
            ),
        )
    )
    await conn.execute(sa.insert(location_snapshot_marks).values(boundary=boundary))


async def _extend(
    conn: AsyncConnection, kept: list[datetime], upto: int, horizon: datetime, limit: int | None
) -> None:
    """Snapshots at the boundaries after ``kept`` (those with one) up to ``horizon`` (at
    most ``limit`` of them, oldest first)."""
    if kept:
        new = boundaries_between(kept[-1], horizon, SNAPSHOT_STEP)
    else:
        first = await conn.scalar(
            sa.select(sa.func.min(ledger.c.event_time)).where(ledger.c.id <= upto)
        )
        if first is None:
            return
        new = boundaries_between(
            boundary_at_or_before(first, SNAPSHOT_STEP), horizon, SNAPSHOT_STEP
        )
    await _take(conn, new[:limit], kept[-1] if kept else None, upto)


def _add(conn: AsyncConnection) -> sa.Insert:
    insert = upsert(conn, location_snapshots)
    return insert.on_conflict_do_update(
        index_elements=["boundary", "item_id", "location"],
        set_={"quantity": location_snapshots.c.quantity + insert.excluded.quantity},
    )


async def _correct(
    conn: AsyncConnection, rows: Sequence[SnapshotRow], kept: list[datetime]
) -> None:
    """Add the rows from before the newest snapshot to every snapshot after their time."""
    deltas: dict[tuple[datetime, int, str], int] = defaultdict(int)
    for row in rows:
        for boundary in kept[bisect_right(kept, row.event_time) :]:
            if row.to_location is not None:
                deltas[(boundary, row.item_id, row.to_location)] += row.quantity
            if row.from_location is not None:
                deltas[(boundary, row.item_id, row.from_location)] -= row.quantity
    changes = [
        {"boundary": boundary, "item_id": item_id, "location": location, "quantity": quantity}
        for (boundary, item_id, location), quantity in sorted(deltas.items())
        if quantity != 0
    ]
    if not changes:
        return
    await execute_many(conn, "location_snapshots", _add, changes)
    snap = location_snapshots.c
    await conn.execute(
        sa.delete(location_snapshots).where(
            snap.boundary == sa.bindparam("b_boundary"),
            snap.item_id == sa.bindparam("b_item_id"),
            snap.location == sa.bindparam("b_location"),
            snap.quantity == 0,
        ),
        [
            {
                "b_boundary": change["boundary"],
                "b_item_id": change["item_id"],
                "b_location": change["location"],
            }
            for change in changes
        ],
    )


async def follow(
    conn: AsyncConnection, rows: Sequence[SnapshotRow], upto: int, now: datetime
) -> None:
    """Bring the snapshots up to ``rows`` (a follower step's, the ledger rows after the
    books' position up to ``upto``)."""
    if not rows:
        return
    kept = await marks(conn)
    if kept:
        await _correct(conn, [row for row in rows if row.event_time < kept[-1]], kept)
        # Snapshots start at the first boundary after the first row; a late row before
        # them adds the boundaries before (as a rebuild would have them), each from the one
        # before it, the first from nothing.
        first = boundary_at_or_before(min(row.event_time for row in rows), SNAPSHOT_STEP)
        earlier = boundaries_between(first, kept[0] - SNAPSHOT_STEP, SNAPSHOT_STEP)
        await _take(conn, earlier, None, upto)
    reached = max(row.event_time for row in rows)
    horizon = boundary_at_or_before(min(reached, now), SNAPSHOT_STEP)
    await _extend(conn, kept, upto, horizon, SNAPSHOTS_PER_STEP)


async def rebuild(conn: AsyncConnection, upto: int, now: datetime) -> None:
    """Every snapshot again from the ledger rows up to ``upto`` (the caller moves the
    books' position to it)."""
    await clear(conn)
    newest = await conn.scalar(
        sa.select(sa.func.max(ledger.c.event_time)).where(ledger.c.id <= upto)
    )
    if isinstance(newest, datetime):
        horizon = boundary_at_or_before(min(newest, now), SNAPSHOT_STEP)
        await _extend(conn, [], upto, horizon, None)


async def clear(conn: AsyncConnection) -> None:
    await conn.execute(sa.delete(location_snapshots))
    await conn.execute(sa.delete(location_snapshot_marks))


async def differences(conn: AsyncConnection, upto: int) -> list[str]:
    """Where the snapshots differ from the ledger rows up to ``upto`` summed again: each
    snapshot against the one the ledger gives (the sums carried forward from the ledger
    alone, not from the snapshot before)."""
    expected: Held = {}
    previous: datetime | None = None
    problems: list[str] = []
    for boundary in await marks(conn):
        between = summed(_between(previous, boundary, upto))
        for item_id, location, quantity in await conn.execute(between):
            key = (int(item_id), str(location))
            expected[key] = expected.get(key, 0) + int(quantity)
        expected = {key: quantity for key, quantity in expected.items() if quantity != 0}
        stored = {
            (int(item_id), str(location)): int(quantity)
            for item_id, location, quantity in await conn.execute(held_at(boundary))
        }
        for key in sorted(set(stored) | set(expected)):
            if stored.get(key, 0) != expected.get(key, 0):
                problems.append(
                    f"location_snapshots {boundary.isoformat()} item {key[0]} location "
                    f"{key[1]}: kept {stored.get(key, 0)}, ledger gives {expected.get(key, 0)}"
                )
        previous = boundary
    return problems
