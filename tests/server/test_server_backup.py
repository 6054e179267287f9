"""``stockgate server backup`` / ``restore`` on a real SQLite store while ingest writes to it.

The backup runs as its own process through the command line, as an administrator would
run it beside a live server; the ingest runs in this process meanwhile. The restored copy
must hold whole batches only and pass ``check-ledger``.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import sys
from pathlib import Path

import pytest
from server_helpers import Batches, RecordingPublisher, make_settings, sgtin

from server.config.settings import DatabaseSettings
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.backup import BackupError, backup_sqlite, restore_sqlite, sqlite_path
from server.store.database import Store

STOCKGATE = str(Path(sys.executable).parent / "stockgate")
EVENTS_PER_BATCH = 40
MAX_BATCHES = 400
CLI_TIMEOUT_S = 120


def _config(path: Path, database: Path) -> Path:
    path.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{database}"\n'
        f'[[api.keys]]\nkey = "{secrets.token_urlsafe(24)}"\nrole = "admin"\n'
    )
    return path


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        STOCKGATE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _ledger_rows(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM ledger").fetchone()[0])


async def test_a_backup_taken_mid_ingest_restores_whole_and_checks(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    settings = make_settings(f"sqlite+aiosqlite:///{live}")
    store = Store.open(settings.database)
    await store.migrate()
    ingestor = Ingestor(store, settings, RecordingPublisher(), Metrics())
    batches = Batches()
    started, backed_up = asyncio.Event(), asyncio.Event()
    sent = 0

    async def ingest() -> None:
        # Keeps writing until the backup is done, then one batch more.
        nonlocal sent
        while sent < MAX_BATCHES:
            first = sent * EVENTS_PER_BATCH
            events = [batches.event(epc=sgtin(first + n)) for n in range(EVENTS_PER_BATCH)]
            await ingestor.handle(batches.topic, batches.payload(events))
            sent += 1
            if sent == 3:
                started.set()
            if backed_up.is_set():
                return
        raise AssertionError("the backup did not finish while ingest ran")

    config = _config(tmp_path / "server.toml", live)
    backup = tmp_path / "backup.db"
    try:
        writing = asyncio.create_task(ingest())
        await asyncio.wait_for(started.wait(), CLI_TIMEOUT_S)
        before = sent
        code, out, err = await _cli(
            "server", "backup", "--config", str(config), "--to", str(backup)
        )
        backed_up.set()
        await writing
    finally:
        await store.close()
    assert code == 0, err
    assert "backup written to" in out

    in_backup = _ledger_rows(backup)
    # Taken while batches were being applied: whole batches only, and not the last ones.
    assert in_backup % EVENTS_PER_BATCH == 0
    assert before * EVENTS_PER_BATCH <= in_backup < _ledger_rows(live)

    restored = tmp_path / "restored.db"
    restored_config = _config(tmp_path / "restored.toml", restored)
    code, out, err = await _cli(
        "server", "restore", "--config", str(restored_config), "--from", str(backup)
    )
    assert code == 0, err
    assert _ledger_rows(restored) == in_backup
    code, out, err = await _cli("server", "check-ledger", "--config", str(restored_config))
    assert code == 0, out + err
    assert "balances agree with the ledger" in out


def _migrated(tmp_path: Path, name: str) -> Path:
    database = tmp_path / name
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{database}"))

    async def migrate() -> None:
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    return database


def test_backup_and_restore_refuse_what_they_cannot_do_safely(tmp_path: Path) -> None:
    live = _migrated(tmp_path, "live.db")
    copy = tmp_path / "copy.db"
    backup_sqlite(live, copy)
    with pytest.raises(BackupError, match="exists already"):
        backup_sqlite(live, copy)
    backup_sqlite(live, copy, overwrite=True)

    stranger = tmp_path / "stranger.db"
    with sqlite3.connect(stranger) as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(BackupError, match="not a stockgate database"):
        restore_sqlite(stranger, tmp_path / "target.db")

    # A server holding the database, writing or idle with its pool open: the restore
    # refuses instead of pulling the ledger away under it.
    for busy in ("BEGIN IMMEDIATE", "SELECT count(*) FROM ledger"):
        holder = sqlite3.connect(live, isolation_level=None)
        try:
            holder.execute("PRAGMA journal_mode=WAL")
            holder.execute(busy).fetchall()
            with pytest.raises(BackupError, match="stop the server"):
                restore_sqlite(copy, live)
        finally:
            holder.close()
    restore_sqlite(copy, live)

    with pytest.raises(BackupError, match="pg_dump"):
        sqlite_path(DatabaseSettings(url="postgresql+asyncpg://u@127.0.0.1/db"))
    with pytest.raises(BackupError, match="no database"):
        backup_sqlite(tmp_path / "missing.db", tmp_path / "x.db")
