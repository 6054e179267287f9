"""The database handle: engine set-up, migrations, transactions and error translation.

Errors are translated here and nowhere else: ``translate`` turns what SQLAlchemy raises into
``StoreError`` and its kinds (``Store.begin`` and ``Store.read`` apply it), and
``refused_on_conflict`` turns a statement that breaks a constraint (a unique or foreign key:
another request took the same SKU or number, or something still refers to a row) into the
refusal the caller names, a 409 in the API.

One ``Store`` per process, built from ``[database]`` and passed down (no global engine).
SQLite runs in WAL mode with ``synchronous=FULL``: an Ack tells the edge it may delete the
events, so a committed batch must survive a power cut. Its page cache and checkpoint size
are ``[database] sqlite_cache_mb`` and ``sqlite_checkpoint_mb`` (both larger than SQLite's
defaults, which made ingest re-read index pages and checkpoint every couple of commits).
PostgreSQL needs nothing special; several server instances may share it (see
``server.ingest.claims`` and ``server.ingest.ledger_writes`` for how writes stay correct).

A full disk is a state, not only an error: the first write refused for lack of space
(``StoreFull``) is logged once and kept in ``Store.full`` until a batch of events commits
again (or any write, after ``FULL_QUIET_S`` without a refusal), so ``/healthz`` and the
``stockgate_database_full`` gauge show it for as long as it lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.config.settings import DatabaseSettings
from server.errors import Conflict, Refused, StoreError, StoreFull, TransientStoreError
from server.store.dialect import staging_on_connect
from server.store.sqlite_process import AnswerWaits, ProcessConnection

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
ALEMBIC_INI = Path(__file__).parent.parent / "alembic.ini"
SQLITE_BEGIN_OPTION = "sqlite_begin"
"""Execution option naming the SQLite BEGIN mode of a connection's transactions."""
WAL_ATTEMPTS = 100
WAL_RETRY_S = 0.05
MIGRATION_LOCK_ID = 0x5709_6A7E
"""PostgreSQL advisory lock held while migrating, so N instances starting together queue."""
PG_DISK_FULL = "53100"
"""PostgreSQL's SQLSTATE ``disk_full`` ("could not extend file ...: No space left on device")."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the server's migrations, optionally bound to a connection."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    command.upgrade(alembic_config(connection), revision)


def sqlite_pragmas(
    settings: DatabaseSettings, page_size: int, *, checkpoint_in_commit: bool = True
) -> list[str]:
    """The PRAGMAs every SQLite connection of the store runs (a file of ``page_size``).

    ``checkpoint_in_commit`` False: the connection's commits leave the checkpoint to its
    process (the write connections' child process checkpoints after answering a commit,
    ``server.store.sqlite_child``)."""
    checkpoint_bytes = checkpoint_size(settings)
    autocheckpoint = max(1, checkpoint_bytes // page_size) if checkpoint_in_commit else 0
    return [
        # journal_mode=WAL is stored in the file and set once by Store.migrate.
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={int(settings.busy_timeout_s * 1000)}",
        # A negative cache_size is in KiB; wal_autocheckpoint counts pages.
        f"PRAGMA cache_size=-{settings.sqlite_cache_mb * 1024}",
        f"PRAGMA wal_autocheckpoint={autocheckpoint}",
        f"PRAGMA journal_size_limit={checkpoint_bytes}",
    ]


def checkpoint_size(settings: DatabaseSettings) -> int:
    """The WAL size in bytes at which it is copied back into the database file."""
    return settings.sqlite_checkpoint_mb * 1024 * 1024


def _sqlite_on_connect(settings: DatabaseSettings, *, checkpoint_in_commit: bool = True) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Python's sqlite3 begins transactions only before DML, so DDL and the reads before a
        # write would run outside any transaction. Turn that off and emit BEGIN ourselves
        # (``_sqlite_begin``), as SQLAlchemy's SQLite documentation recommends.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA page_size")
            page_size = int(cursor.fetchone()[0])
            for pragma in sqlite_pragmas(
                settings, page_size, checkpoint_in_commit=checkpoint_in_commit
            ):
                cursor.execute(pragma)
        finally:
            cursor.close()

    return on_connect


def postgresql_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """asyncpg's connect arguments: the timeouts and keepalives of ``[database]``.

    Each bound ends a different way of hanging: ``command_timeout`` is the client's own
    clock on every statement (it also ends a wait on a connection whose peer is gone, which
    no server setting can), ``statement_timeout`` and ``idle_in_transaction_session_timeout``
    let the server end runaway or abandoned work, and the TCP keepalives let the server
    notice a client that vanished.
    """
    return {
        "timeout": settings.connect_timeout_s,
        "command_timeout": settings.command_timeout_s,
        "server_settings": {
            "statement_timeout": str(int(settings.statement_timeout_s * 1000)),
            "idle_in_transaction_session_timeout": str(
                int(settings.idle_in_transaction_timeout_s * 1000)
            ),
            "tcp_keepalives_idle": str(settings.tcp_keepalives_idle_s),
            "tcp_keepalives_interval": str(settings.tcp_keepalives_interval_s),
            "tcp_keepalives_count": str(settings.tcp_keepalives_count),
        },
    }


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a transaction that reads and then writes
    # could otherwise fail at once with SQLITE_BUSY when another writer got in between.
    mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _is_full(err: SQLAlchemyError) -> bool:
    """The database is out of space: SQLite's ``SQLITE_FULL`` (a full disk, or the file at
    its ``max_page_count``), PostgreSQL's ``disk_full``."""
    orig = getattr(err, "orig", None)
    if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    return getattr(orig, "sqlstate", None) == PG_DISK_FULL


def translate(err: SQLAlchemyError, doing: str) -> StoreError:
    """Turn a SQLAlchemy error into our tree; the caller raises it ``from err``."""
    transient = isinstance(err, OperationalError) or (
        isinstance(err, DBAPIError) and err.connection_invalidated
    )
    # PostgreSQL reports deadlocks and serialization failures by SQLSTATE class 40.
    sqlstate = getattr(getattr(err, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith("40"):
        transient = True
    kind = TransientStoreError if transient else StoreError
    if _is_full(err):
        kind = StoreFull
    return kind(f"database error while {doing}: {_detail(err)}")


def _detail(err: SQLAlchemyError) -> str:
    """The first line of what the database said (the driver's message), else SQLAlchemy's."""
    detail = str(err.orig) if isinstance(err, DBAPIError) and err.orig is not None else str(err)
    return detail.splitlines()[0] if detail else str(err)


@contextlib.asynccontextmanager
async def refused_on_conflict(refusal: str | Refused) -> AsyncIterator[None]:
    """Statements inside that break a constraint of the schema are refused, not failed.

    Callers check what they can before writing (the SKU is free, nothing refers to the row);
    a violation that still happens means another transaction got in between, or a reference
    no check covers. Use it inside ``Store.begin``: the refusal leaves the transaction and
    rolls it back (PostgreSQL has aborted it already).

    Args:
        refusal: what the statements write (``"item 'A-1'"``), for a ``Conflict`` naming it
            and the constraint the database reports; or the refusal itself, when the caller
            knows what a violation means there ("another change took version 3").

    Raises:
        Refused: ``refusal``, or the ``Conflict`` naming it, from the ``IntegrityError``.
    """
    try:
        yield
    except IntegrityError as err:
        if isinstance(refusal, Refused):
            raise refusal from err
        raise Conflict(f"{refusal} conflicts with existing data ({_detail(err)})") from err


@dataclass(frozen=True, slots=True)
class FullSince:
    """The database has refused writes for lack of space since ``since``."""

    since: datetime
    last_refused: datetime
    error: str
    """The last refusal, as ``translate`` words it."""


FULL_QUIET_S = 60.0
"""A write that is not a batch of events clears ``Store.full`` only when no write has
been refused for this long: on a nearly full disk small writes (a sweep, a follower's
position) still fit while batches do not, and the state should not flicker with them."""


class Store:
    """The server's database.

    Args:
        engine: an async engine on SQLite (aiosqlite) or PostgreSQL (asyncpg).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        write_wait_s: float | None = None,
        write_engine: AsyncEngine | None = None,
        answer_waits: AnswerWaits | None = None,
    ) -> None:
        self.engine = engine
        self.write_engine = write_engine or engine
        """Where write transactions run (``begin``): on a SQLite file, connections whose
        SQLite lives in a child process (``server.store.sqlite_process``)."""
        self._full: FullSince | None = None
        self._known_locations: set[str] = set()
        self._write_wait_s = write_wait_s
        self._write_turn: asyncio.Lock | None = None
        self._write_turn_loop: asyncio.AbstractEventLoop | None = None
        self._answer_waits = answer_waits or AnswerWaits()
        """The write connections' requests waited on that their SQLite process answers at
        once (``yield_to_writes``)."""
        self.stock_writes = 0
        """Write transactions of this process committed so far that may have changed what the
        stock rules read (``begin(..., stock=False)`` promises they did not). Ingest plans a
        group ahead of its transaction and compares this count to tell whether anything
        else committed meanwhile (``server.ingest.transactions``)."""

    @classmethod
    def open(cls, settings: DatabaseSettings) -> Store:
        """Build the engine for ``[database]``; nothing connects until first use."""
        url = sa.engine.make_url(settings.url)
        kwargs: dict[str, Any] = {"echo": settings.echo}
        if url.get_backend_name() == "sqlite":
            # A file has no connection to lose: no ping before each checkout (one thread
            # hop less for every request and every transaction).
            kwargs["connect_args"] = {"timeout": settings.busy_timeout_s}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["pool_size"] = settings.pool_size
            kwargs["connect_args"] = postgresql_connect_args(settings)
        engine = create_async_engine(url, **kwargs)
        if url.get_backend_name() == "sqlite":
            write_engine = None
            waits = AnswerWaits()
            if url.database and url.database != ":memory:" and not url.query:
                write_engine = create_async_engine(
                    url,
                    echo=settings.echo,
                    async_creator=partial(
                        ProcessConnection.open,
                        url.database,
                        settings.busy_timeout_s,
                        checkpoint_bytes=checkpoint_size(settings),
                        waits=waits,
                    ),
                )
                # Its child checkpoints after answering a commit, not inside it.
                event.listen(
                    write_engine.sync_engine,
                    "connect",
                    _sqlite_on_connect(settings, checkpoint_in_commit=False),
                )
            event.listen(engine.sync_engine, "connect", _sqlite_on_connect(settings))
            for each in [engine] if write_engine is None else [engine, write_engine]:
                event.listen(each.sync_engine, "begin", _sqlite_begin)
            return cls(
                engine,
                write_wait_s=settings.busy_timeout_s,
                write_engine=write_engine,
                answer_waits=waits,
            )
        event.listen(engine.sync_engine, "connect", staging_on_connect(engine.dialect))
        return cls(engine)

    async def yield_to_writes(self) -> None:
        """Before a long step of the event loop's own work (checking a batch, a step of
        planning): wait while a write transaction waits on an answer its SQLite process
        gives at once (``AnswerWaits``), so that transaction goes on first. Returns at once
        on PostgreSQL, and when no such answer is due."""
        await self._answer_waits.none()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def full(self) -> FullSince | None:
        """Set while writes fail for lack of space: from the first such failure until a batch
        of events commits again, or any write does with no refusal for ``FULL_QUIET_S``
        (``/healthz``, ``stockgate_database_full``)."""
        return self._full

    def _note_full(self, err: StoreFull) -> None:
        now = datetime.now(UTC)
        if self._full is None:
            log.error(
                "database full: writes refused (%s); ingest sends no Acks, so gateways keep "
                "their events and re-send; free space on the database's disk to resume",
                err,
            )
            self._full = FullSince(now, now, str(err))
        else:
            self._full = FullSince(self._full.since, now, str(err))

    def _note_written(self, *, events: bool) -> None:
        full = self._full
        if full is None:
            return
        now = datetime.now(UTC)
        if not events and (now - full.last_refused).total_seconds() < FULL_QUIET_S:
            return
        log.warning("database writable again after %.1f s full", (now - full.since).total_seconds())
        self._full = None

    @property
    def known_locations(self) -> set[str]:
        """Location ids this process has seen in the table (a cache; rows are never deleted)."""
        return self._known_locations

    async def close(self) -> None:
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
        await self.engine.dispose()

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (Alembic ``upgrade``), in one transaction.

        Raises:
            StoreError: the database is unreachable or a migration failed.
        """
        try:
            if self.dialect == "sqlite":
                await self._use_wal()
            async with self._writer() as conn:
                await conn.run_sync(_upgrade, revision)
        except SQLAlchemyError as err:
            raise translate(err, "migrating the schema") from err
        except OSError as err:
            raise StoreError(f"cannot reach the database to migrate it: {err}") from err

    async def _use_wal(self) -> None:
        # Switching to WAL needs the file to itself and does not wait for the busy timeout,
        # so retry (bounded) while another connection is busy; it is a no-op once set.
        for attempt in range(1, WAL_ATTEMPTS + 1):
            async with self.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                if driver is None:
                    raise StoreError("the SQLite connection is closed")
                try:
                    # The driver connection: a PRAGMA outside any transaction (BEGIN is ours).
                    async with driver.execute("PRAGMA journal_mode=WAL") as cur:
                        row = await cur.fetchone()
                except sqlite3.OperationalError as err:
                    if attempt == WAL_ATTEMPTS:
                        raise StoreError(f"cannot switch SQLite to WAL mode: {err}") from err
                    await asyncio.sleep(WAL_RETRY_S)
                    continue
            if row is None or str(row[0]).lower() != "wal":
                raise StoreError(f"SQLite refused WAL mode (journal mode is {row!r})")
            return

    async def ping(self) -> bool:
        """True when a trivial query succeeds."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (SQLAlchemyError, OSError) as err:
            log.warning("database ping failed: %s", err)
            return False
        return True

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[AsyncConnection]:
        async with self._turn(), self.write_engine.connect() as conn:
            await conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            async with conn.begin():
                yield conn

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """SQLite: this process's write transactions one at a time, in the order they asked.

        SQLite has one writer. Left to SQLite, a ``BEGIN IMMEDIATE`` that finds the write
        lock taken sleeps in the busy handler (1, 2, 5, ... up to 100 ms a try) and may
        wake long after the lock is free; ingest, the alert relay, the history follower
        and the sweeps all write, so each hand-over cost ingest milliseconds. Queued on a
        lock here, the next writer starts the moment the last one ends. Other processes
        (the CLI) still meet the busy handler. Waiting longer than the busy timeout is
        the same transient failure SQLite's "database is locked" would be.
        """
        if self._write_wait_s is None:
            yield
            return
        loop = asyncio.get_running_loop()
        if self._write_turn is None or self._write_turn_loop is not loop:
            # A lock belongs to one event loop; a store used from another gets its own.
            self._write_turn, self._write_turn_loop = asyncio.Lock(), loop
        turn = self._write_turn
        try:
            async with asyncio.timeout(self._write_wait_s):
                await turn.acquire()
        except TimeoutError:
            raise TransientStoreError(
                f"database is locked: no write turn within {self._write_wait_s:g} s"
            ) from None
        try:
            yield
        finally:
            turn.release()

    @contextlib.asynccontextmanager
    async def begin(
        self, doing: str, *, events: bool = False, stock: bool = True
    ) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction; committed on success, rolled back on error.

        Args:
            doing: names the operation in error messages.
            events: the transaction applies batches of events (ingest); its commit ends a
                full-disk state at once (``Store.full``; other writes end it after
                ``FULL_QUIET_S``).
            stock: False promises the transaction writes nothing the stock rules read (units,
                items, seen event ids, orders, counts' ledger rows): history rollups, alert
                deliveries, gateway statuses. Counted in ``stock_writes`` otherwise.

        Raises:
            StoreError: (or ``TransientStoreError``) the database failed; ``doing`` names the
                operation in the message.
        """
        try:
            async with self._writer() as conn:
                yield conn
        except SQLAlchemyError as err:
            translated = translate(err, doing)
            if isinstance(translated, StoreFull):
                self._note_full(translated)
            raise translated from err
        except OSError as err:
            raise TransientStoreError(f"database unreachable while {doing}: {err}") from err
        self._note_written(events=events)
        if stock:
            # Committed (nothing awaited since): a plan made before this saw the old state.
            self.stock_writes += 1

    @contextlib.asynccontextmanager
    async def read(self, doing: str) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (no explicit transaction).

        Raises:
            StoreError: the database failed.
        """
        try:
            async with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as err:
            raise translate(err, doing) from err
        except OSError as err:
            raise TransientStoreError(f"database unreachable while {doing}: {err}") from err

    @contextlib.asynccontextmanager
    async def read_pair(self, doing: str) -> AsyncIterator[tuple[AsyncConnection, AsyncConnection]]:
        """Two connections for reads (``read``), for a report that reads on both at once:
        while the database works for one, Python works on what the other returned."""
        async with self.read(doing) as first, self.read(doing) as second:
            yield first, second
