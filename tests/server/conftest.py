"""Fixtures for the server tests: a real database (SQLite file and PostgreSQL), real config.

The ``store`` fixture runs every test that uses it twice: on a fresh SQLite file in
``tmp_path`` and on PostgreSQL (the machine's service, trust auth): a database created and
migrated once per test session, emptied before each test, dropped at the end. If PostgreSQL
is unreachable the postgresql cases fail (it is part of what the server supports); the
connect timeout keeps that quick.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from server_helpers import Batches, Probe, RecordingPublisher, make_settings

from server.api.factory import create_app
from server.config.settings import DatabaseSettings, ServerSettings
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema.core import metadata

PG_HOST = os.environ.get("STOCKGATE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("STOCKGATE_TEST_PG_PORT", "5432"))
PG_CONNECT_TIMEOUT_S = 3.0
T = TypeVar("T")


TABLES = ", ".join(sorted(metadata.tables))
"""Every table of the schema, emptied between tests on the session's PostgreSQL database (a
table left out keeps one test's rows for the next)."""


async def _pg_admin(database: str = "test") -> Any:
    dsn = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{database}"
    try:
        return await asyncpg.connect(dsn, timeout=PG_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError) as err:
        pytest.fail(f"PostgreSQL is not reachable at {dsn}: {err}")


def _pg_url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"


async def _create_pg_database(*, migrate: bool) -> str:
    name = f"stockgate_test_{uuid.uuid4().hex[:16]}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    if migrate:
        store = Store.open(DatabaseSettings(url=_pg_url(name)))
        try:
            await store.migrate()
        finally:
            await store.close()
    return name


async def _drop_pg_database(name: str) -> None:
    admin = await _pg_admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # A private loop: asyncio.run() would unset the loop pytest-asyncio manages.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One migrated PostgreSQL database for the session, dropped at its end."""
    name = _run(_create_pg_database(migrate=True))
    try:
        yield name
    finally:
        _run(_drop_pg_database(name))


async def _empty_pg_database(name: str) -> None:
    conn = await _pg_admin(name)
    try:
        await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with the schema and no rows: a new SQLite file, or the session's
    PostgreSQL database emptied (faster than creating one per test; the migration tests use
    ``fresh_database_url`` for an untouched database)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    # Sync on purpose: the session fixture and this clean-up run on a private loop, which
    # cannot start inside the test's running loop.
    name = request.getfixturevalue("pg_database")
    _run(_empty_pg_database(name))
    return _pg_url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database nobody has touched: a new SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    name = await _create_pg_database(migrate=False)
    try:
        yield _pg_url(name)
    finally:
        await _drop_pg_database(name)


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_settings(database_url)


@pytest.fixture
async def store(settings: ServerSettings) -> AsyncIterator[Store]:
    opened = Store.open(settings.database)
    try:
        await opened.migrate()
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client(store: Store, settings: ServerSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on ``create_app(store, settings)`` in process (no server, no socket); a
    module that needs another app defines its own ``client``."""
    transport = httpx.ASGITransport(app=create_app(store, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        yield http


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def ingestor(
    store: Store, settings: ServerSettings, publisher: RecordingPublisher, metrics: Metrics
) -> Ingestor:
    return Ingestor(store, settings, publisher, metrics)


@pytest.fixture
def batches() -> Batches:
    return Batches()


@pytest.fixture
def probe(store: Store) -> Probe:
    return Probe(store)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards), for tests that start real
    server processes on it (they migrate it themselves)."""
    name = await _create_pg_database(migrate=False)
    try:
        yield _pg_url(name)
    finally:
        await _drop_pg_database(name)
