"""Files the benchmarks make and start from nothing."""

from __future__ import annotations

from pathlib import Path

SQLITE_COMPANIONS = ("-wal", "-shm")
"""What SQLite keeps beside a database file in WAL mode."""


def remove_database(path: Path, *also: str) -> None:
    """Delete a SQLite database file, its WAL and shared-memory files, and the files named
    like it with each of ``also`` appended (an outbox's ``.lock``)."""
    for suffix in ("", *SQLITE_COMPANIONS, *also):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
