"""Periodic jobs several server instances may run: one instance per turn, by compare-and-set.

A job is a row of ``job_leases``. ``claim`` moves its ``lease_until`` forward only when the
lease is free (never taken, or run out) and, for a scheduled job, when its last run is at
least ``every_s`` old: the ``UPDATE ... WHERE`` decides between instances (PostgreSQL row
lock; SQLite's single writer), so exactly one of them gets the turn. ``release`` records
the outcome and frees the lease; a crashed holder's lease runs out and another takes over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.dialect import upsert
from server.store.schema.supply import MAX_JOB_ERROR, job_leases


@dataclass(frozen=True, slots=True)
class Turn:
    """A claimed turn of a job: its position and how many attempts failed before."""

    name: str
    cursor: int | None
    attempts: int
    last_run_at: datetime | None


async def claim(
    conn: AsyncConnection,
    name: str,
    now: datetime,
    lease_s: float,
    *,
    every_s: float = 0.0,
    not_before: datetime | None = None,
) -> Turn | None:
    """Take the job's turn if it is free and due; None when another instance has it.

    Args:
        conn: a connection in a transaction the caller commits (short: the claim only).
        name: the job.
        now: the current time.
        lease_s: how long the turn is held at most.
        every_s: a scheduled job runs at most this often.
        not_before: the job is not due before this time (a retry after a failure).
    """
    await conn.execute(
        upsert(conn, job_leases)
        .values(name=name, attempts=0)
        .on_conflict_do_nothing(index_elements=[job_leases.c.name])
    )
    conditions = [
        job_leases.c.name == name,
        sa.or_(job_leases.c.lease_until.is_(None), job_leases.c.lease_until < now),
    ]
    if every_s > 0:
        conditions.append(
            sa.or_(
                job_leases.c.last_run_at.is_(None),
                job_leases.c.last_run_at <= now - timedelta(seconds=every_s),
            )
        )
    if not_before is not None and not_before > now:
        return None
    row = (
        await conn.execute(
            job_leases.update()
            .where(*conditions)
            .values(lease_until=now + timedelta(seconds=lease_s))
            .returning(job_leases.c.cursor, job_leases.c.attempts, job_leases.c.last_run_at)
        )
    ).first()
    if row is None:
        return None
    return Turn(name, row.cursor, int(row.attempts), row.last_run_at)


async def release(
    conn: AsyncConnection,
    turn: Turn,
    now: datetime,
    *,
    cursor: int | None = None,
    error: str | None = None,
) -> None:
    """End a turn: a success moves the cursor and the last run; a failure counts an attempt."""
    values: dict[str, object] = {"lease_until": None}
    if error is None:
        values.update(last_run_at=now, attempts=0, last_error=None)
        if cursor is not None:
            values["cursor"] = cursor
    else:
        values.update(attempts=turn.attempts + 1, last_error=error[:MAX_JOB_ERROR])
    await conn.execute(job_leases.update().where(job_leases.c.name == turn.name).values(**values))


async def read(conn: AsyncConnection, name: str) -> Turn | None:
    """The job's row as it stands (tests, status)."""
    row = (
        await conn.execute(
            sa.select(job_leases.c.cursor, job_leases.c.attempts, job_leases.c.last_run_at).where(
                job_leases.c.name == name
            )
        )
    ).first()
    return None if row is None else Turn(name, row.cursor, int(row.attempts), row.last_run_at)
