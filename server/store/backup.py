"""``stockgate server backup`` and ``restore``: a consistent copy of the SQLite store.

Backup uses SQLite's online backup API (Python's ``sqlite3.Connection.backup``) in one
step: the copy is the database as of one read transaction, taken while the server keeps
ingesting (in WAL mode readers do not block writers, and the server's commits after that
moment are simply not in the copy). The copy is written beside the target and renamed
into place only after an integrity check passed, so a backup file is either whole or not
there.

Restore copies a backup into the configured database through the same API (so the
target's WAL and shared-memory files stay consistent with it), after checking that the
file is a stockgate database that passes SQLite's integrity check and that nothing holds
the target (the server must be stopped: a restore under a running server would pull the
ledger from under it). The server migrates a restored database at its next start.

What a restore means for the ledger: every movement recorded after the backup is gone
from the restored database, and the gateways deleted those events from their outboxes
when the server acknowledged them; take backups often, and prefer PostgreSQL with its
point-in-time recovery where that matters (README "Production": ``pg_dump``).

PostgreSQL is not handled here: ``pg_dump``/``pg_restore`` do it properly and are the
documented route; the commands say so.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlalchemy as sa

from server.config.settings import DatabaseSettings
from server.errors import ServerError

BUSY_TIMEOUT_S: Final = 10.0
"""Longest a backup waits for a lock the server holds (a checkpoint) before failing."""
RESTORE_LOCK_TIMEOUT_S: Final = 1.0
REQUIRED_TABLES: Final = ("alembic_version", "ledger", "balances", "seen_events")
"""Tables a file must hold to be taken for a stockgate database."""


class BackupError(ServerError):
    """A backup or restore that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    bytes: int
    ledger_rows: int
    revision: str


def sqlite_path(settings: DatabaseSettings) -> Path:
    """The file of a SQLite ``[database] url``.

    Raises:
        BackupError: the database is not SQLite (PostgreSQL: use pg_dump), or in memory.
    """
    url = sa.engine.make_url(settings.url)
    if not url.drivername.startswith("sqlite"):
        raise BackupError(
            "the database is PostgreSQL: back it up with pg_dump and restore it with "
            "pg_restore (README, Production: back up)"
        )
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory database cannot be backed up")
    return Path(url.database)


def _describe(connection: sqlite3.Connection, what: str) -> tuple[int, str]:
    """Ledger rows and schema revision of a stockgate database; checks it is whole."""
    names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    missing = [table for table in REQUIRED_TABLES if table not in names]
    if missing:
        raise BackupError(f"{what} is not a stockgate database (no {', '.join(missing)})")
    check = connection.execute("PRAGMA integrity_check").fetchall()
    if check != [("ok",)]:
        problems = "; ".join(str(row[0]) for row in check[:5])
        raise BackupError(f"{what} fails SQLite's integrity check: {problems}")
    rows = int(connection.execute("SELECT count(*) FROM ledger").fetchone()[0])
    revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return rows, str(revision[0]) if revision else "none"


def _connect(path: Path, timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    # Read-write even to read: a read-only connection cannot open a WAL database whose
    # shared-memory file is gone (a stopped server); nothing here writes to the source.
    return sqlite3.connect(path, timeout=timeout, isolation_level=None)


def backup_sqlite(source: Path, target: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the database at ``source`` to ``target`` as of one moment (see module doc).

    Raises:
        BackupError: no such database, the target exists (without ``overwrite``), or the
            copy does not check out.
    """
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if target.exists() and not overwrite:
        raise BackupError(f"{target} exists already (--force replaces it)")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with closing(_connect(source)) as origin, closing(_connect(partial)) as copy:
            # One step: the whole database as of one read transaction.
            origin.backup(copy, pages=-1)
            rows, revision = _describe(copy, f"the copy of {source}")
        partial.replace(target)
    except sqlite3.Error as err:
        raise BackupError(f"backup of {source} failed: {err}") from err
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(target, target.stat().st_size, rows, revision)


def restore_sqlite(backup: Path, target: Path) -> BackupResult:
    """Replace the database at ``target`` with the backup at ``backup``.

    Raises:
        BackupError: the backup is not a whole stockgate database, or something (the
            server) holds the target.
    """
    if not backup.is_file():
        raise BackupError(f"no backup at {backup}")
    try:
        with closing(_connect(backup)) as origin:
            rows, revision = _describe(origin, str(backup))
            target.parent.mkdir(parents=True, exist_ok=True)
            with closing(_connect(target, RESTORE_LOCK_TIMEOUT_S)) as destination:
                # Leaving WAL mode needs the only connection: a running server, even
                # idle, holds some (its pool), and a writer holds the lock besides.
                try:
                    mode = destination.execute("PRAGMA journal_mode=DELETE").fetchone()
                    destination.execute("BEGIN EXCLUSIVE")
                    destination.execute("ROLLBACK")
                except sqlite3.OperationalError as err:
                    mode = (f"{err}",)
                if str(mode[0]).lower() != "delete":
                    raise BackupError(
                        f"{target} is in use ({mode[0]}): stop the server before restoring"
                    )
                origin.backup(destination, pages=-1)
    except sqlite3.Error as err:
        raise BackupError(f"restore of {backup} into {target} failed: {err}") from err
    return BackupResult(target, target.stat().st_size, rows, revision)


async def backup_command(settings: DatabaseSettings, to: Path, *, force: bool = False) -> int:
    """``stockgate server backup``: print what was written; raises ``BackupError``."""
    result = await asyncio.to_thread(backup_sqlite, sqlite_path(settings), to, overwrite=force)
    print(
        f"backup written to {result.path}: {result.bytes} bytes, {result.ledger_rows} ledger "
        f"rows, schema {result.revision}"
    )
    return 0


async def restore_command(settings: DatabaseSettings, source: Path) -> int:
    """``stockgate server restore``: print what was restored; raises ``BackupError``."""
    target = sqlite_path(settings)
    result = await asyncio.to_thread(restore_sqlite, source, target)
    print(
        f"restored {source} into {target}: {result.ledger_rows} ledger rows, schema "
        f"{result.revision}; the server migrates it at its next start"
    )
    return 0
