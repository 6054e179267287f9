"""The outbox's SQLite file: its schema, opening it, and the statements run on it.

Storage is one SQLite file in WAL mode with ``synchronous=FULL``, reached through
aiosqlite. It holds three things: a ``meta`` table (schema version, gateway, epoch, next
sequence number), the ``events`` table (sequence number, event JSON, the wall time it was
appended) and nothing else. It is the only durable store on the edge
(docs/architecture.md §4). Transactions are explicit (``BEGIN IMMEDIATE`` ... ``COMMIT``)
and a failed one is rolled back before its error is raised.

Identity. Event ids are ``{gateway}:{epoch}:{seq}``. The epoch is a random hex id made
when the file is created; a replaced disk gets a new epoch, so ids stay unique forever. The
sequence number increases by one per event and is never reused, even after the events
holding the highest numbers were acknowledged and deleted: the next number is kept in
``meta`` and committed with the events that used it.

One process at a time. Two agents on one file would hand out the same sequence numbers,
and the server would then skip the second event with a given id as a duplicate. An
exclusive ``flock`` on ``{path}.lock`` makes a second opener fail with ``OutboxLocked``.

What to do with the rows (when to commit, what to refuse, when to delete) is
``edge.buffer.outbox``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiosqlite

from edge.buffer.errors import OutboxError, OutboxLocked

__all__ = [
    "EPOCH_BYTES",
    "SCHEMA_VERSION",
    "Stored",
    "bound_file",
    "connect",
    "delete_events",
    "insert_events",
    "load",
    "lock",
    "oldest_created_at",
    "read_events",
    "storage_modes",
]

SCHEMA_VERSION: Final = 1
EPOCH_BYTES: Final = 8
"""The epoch is 16 hex digits: 64 random bits."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

Row = tuple[int, str, float]
"""An event as stored: sequence number, event JSON, wall time it was appended."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What an outbox file holds when it is opened."""

    epoch: str
    next_seq: int
    depth: int
    """Events held (committed and not yet acknowledged)."""
    created: bool
    """The file was made just now (a new epoch)."""


def lock(path: Path) -> int:
    """Take the exclusive lock of the outbox at ``path``; returns the lock file's descriptor.

    Raises:
        OutboxLocked: another process holds it.
        OutboxError: the lock file cannot be made.
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutboxError(f"outbox {path}: cannot create {lock_path}: {err.strerror}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise OutboxLocked(f"outbox {path} is open in another process") from err
    return fd


async def connect(path: Path) -> aiosqlite.Connection:
    """Open the file in WAL mode with ``synchronous=FULL``.

    Raises:
        OutboxError: it cannot be opened, or its file system has no WAL mode.
    """
    try:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as err:
        raise OutboxError(f"outbox {path}: cannot open: {err}") from err
    try:
        async with db.execute("PRAGMA journal_mode=WAL") as cursor:
            row = await cursor.fetchone()
        if row is None or str(row[0]).lower() != "wal":
            raise OutboxError(f"outbox {path}: the file system does not support WAL mode")
        # FULL: a commit is on the disk when COMMIT returns, also across a power cut.
        await db.execute("PRAGMA synchronous=FULL")
    except (sqlite3.Error, OutboxError) as err:
        await db.close()
        if isinstance(err, OutboxError):
            raise
        raise OutboxError(f"outbox {path}: cannot open: {err}") from err
    return db


async def bound_file(db: aiosqlite.Connection, path: Path, max_file_mb: int) -> None:
    """Cap the database at ``max_file_mb`` (a commit past it fails like on a full disk)."""
    try:
        async with db.execute("PRAGMA page_size") as cursor:
            row = await cursor.fetchone()
        page_size = int(row[0]) if row is not None else 4096
        pages = max(1, max_file_mb * 1024 * 1024 // page_size)
        await db.execute(f"PRAGMA max_page_count = {pages}")
    except sqlite3.Error as err:
        raise OutboxError(f"outbox {path}: cannot bound its size: {err}") from err


async def load(db: aiosqlite.Connection, path: Path, gateway: str) -> Stored:
    """Make the tables and ``meta`` of a new file, or read and check those of an old one.

    Raises:
        OutboxError: the file cannot be read, is of another schema, belongs to another
            gateway, or its ``meta`` is damaged.
    """
    created = False
    try:
        await db.executescript(_SCHEMA)
        meta = await _read_meta(db)
        if not meta:
            meta = {
                "schema": str(SCHEMA_VERSION),
                "gateway": gateway,
                "epoch": secrets.token_hex(EPOCH_BYTES),
                "next_seq": "1",
            }
            await db.execute("BEGIN IMMEDIATE")
            await db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
            await db.execute("COMMIT")
            created = True
        async with db.execute("SELECT COUNT(*), MAX(seq) FROM events") as cursor:
            row = await cursor.fetchone()
    except sqlite3.Error as err:
        raise OutboxError(f"outbox {path}: cannot read: {err}") from err
    if meta.get("schema") != str(SCHEMA_VERSION):
        raise OutboxError(
            f"outbox {path}: schema {meta.get('schema')!r}, this build reads {SCHEMA_VERSION}"
        )
    if meta.get("gateway") != gateway:
        raise OutboxError(
            f"outbox {path} belongs to gateway {meta.get('gateway')!r}, not {gateway!r}; "
            f"let it drain under its own id or move it away"
        )
    depth, max_seq = (row[0], row[1]) if row is not None else (0, None)
    try:
        next_seq = max(int(meta["next_seq"]), (max_seq or 0) + 1)
    except (KeyError, ValueError) as err:
        raise OutboxError(f"outbox {path}: damaged meta table: {err}") from err
    return Stored(epoch=meta["epoch"], next_seq=next_seq, depth=depth, created=created)


async def insert_events(db: aiosqlite.Connection, rows: Sequence[Row], next_seq: int) -> None:
    """Commit ``rows`` and the next sequence number in one transaction.

    Raises:
        sqlite3.Error: the commit failed (rolled back: nothing of it is stored).
    """
    try:
        await db.execute("BEGIN IMMEDIATE")
        await db.executemany("INSERT INTO events(seq, body, created_at) VALUES (?, ?, ?)", rows)
        await db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(next_seq),))
        await db.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise


async def delete_events(db: aiosqlite.Connection, seq_first: int, seq_last: int) -> int:
    """Delete the events ``seq_first..seq_last`` in one transaction; returns how many.

    Raises:
        sqlite3.Error: the delete failed (rolled back: nothing was deleted).
    """
    try:
        await db.execute("BEGIN IMMEDIATE")
        cursor = await db.execute(
            "DELETE FROM events WHERE seq BETWEEN ? AND ?", (seq_first, seq_last)
        )
        deleted = cursor.rowcount
        await cursor.close()
        await db.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise
    return deleted


async def read_events(
    db: aiosqlite.Connection, after_seq: int, limit: int
) -> list[tuple[int, str]]:
    """Up to ``limit`` events with a sequence number above ``after_seq``, oldest first.

    Raises:
        sqlite3.Error: the read failed.
    """
    async with db.execute(
        "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
    ) as cursor:
        rows = await cursor.fetchall()
    return [(int(seq), str(body)) for seq, body in rows]


async def oldest_created_at(db: aiosqlite.Connection) -> float | None:
    """The wall time the oldest stored event was appended; None when none is stored.

    Raises:
        sqlite3.Error: the read failed.
    """
    async with db.execute("SELECT created_at FROM events ORDER BY seq LIMIT 1") as cursor:
        row = await cursor.fetchone()
    return None if row is None else float(row[0])


async def storage_modes(db: aiosqlite.Connection) -> tuple[str, int] | None:
    """``(journal_mode, synchronous)`` in effect; None if SQLite returned no row."""
    async with db.execute("PRAGMA journal_mode") as cursor:
        journal = await cursor.fetchone()
    async with db.execute("PRAGMA synchronous") as cursor:
        synchronous = await cursor.fetchone()
    if journal is None or synchronous is None:
        return None
    return str(journal[0]), int(synchronous[0])


async def _read_meta(db: aiosqlite.Connection) -> dict[str, str]:
    async with db.execute("SELECT key, value FROM meta") as cursor:
        return {str(key): str(value) for key, value in await cursor.fetchall()}
