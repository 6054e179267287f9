"""Migrations: a fresh database reaches head, matches server.store.schema, and can go back down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.dialects import postgresql, sqlite

from server.config.settings import DatabaseSettings
from server.errors import TransientStoreError
from server.store.database import Store, alembic_config
from server.store.schema.core import UtcDateTime, compared, metadata

TABLES = {*metadata.tables, "alembic_version"}
"""Every table the definitions hold, plus Alembic's own."""


def _schema_diff(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "include_object": compared(connection.dialect.name)},
    )
    return list(compare_metadata(context, metadata))


def _current(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_fresh_sqlite_file_migrates_to_head(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    try:
        await store.migrate()
        await store.migrate()  # idempotent: a restart runs it again
        async with store.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
            revision = await conn.run_sync(_current)
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
    finally:
        await store.close()
    assert path.exists()
    assert tables == TABLES
    assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert journal == "wal"


async def test_sqlite_connections_get_the_configured_cache_and_checkpoint(
    tmp_path: Path,
) -> None:
    settings = DatabaseSettings(
        url=f"sqlite+aiosqlite:///{tmp_path / 'tuned.db'}",
        sqlite_cache_mb=16,
        sqlite_checkpoint_mb=8,
    )
    store = Store.open(settings)
    try:
        await store.migrate()
        async with store.engine.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("cache_size", "wal_autocheckpoint", "journal_size_limit", "page_size")
            }
    finally:
        await store.close()
    assert pragmas["cache_size"] == -16 * 1024  # KiB
    assert pragmas["wal_autocheckpoint"] == 8 * 1024 * 1024 // pragmas["page_size"]
    assert pragmas["journal_size_limit"] == 8 * 1024 * 1024


async def test_sqlite_writers_of_one_process_take_turns_in_the_order_they_asked(
    tmp_path: Path,
) -> None:
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}"))
    entered: list[int] = []
    holding, release = asyncio.Event(), asyncio.Event()

    async def writer(number: int) -> None:
        async with store.begin(f"writer {number}") as conn:
            entered.append(number)
            await conn.execute(
                sa.text("INSERT INTO seen_events VALUES (:id, '2024-01-01')"), {"id": str(number)}
            )
            if number == 0:
                holding.set()
                await release.wait()  # holds the write turn while the others queue

    try:
        await store.migrate()
        first = asyncio.create_task(writer(0))
        await holding.wait()
        others = [asyncio.create_task(writer(number)) for number in (1, 2, 3)]
        await asyncio.sleep(0.2)
        assert entered == [0]  # the others wait for the turn, not inside SQLite
        release.set()
        await asyncio.gather(first, *others)
        async with store.engine.connect() as conn:
            rows = (await conn.exec_driver_sql("SELECT COUNT(*) FROM seen_events")).scalar()
    finally:
        await store.close()
    assert entered == [0, 1, 2, 3]
    assert rows == 4


async def test_a_sqlite_writer_waiting_past_the_busy_timeout_fails_as_transient(
    tmp_path: Path,
) -> None:
    settings = DatabaseSettings(
        url=f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}", busy_timeout_s=0.3
    )
    store = Store.open(settings)
    try:
        await store.migrate()
        async with store.begin("holding the write turn"):
            with pytest.raises(TransientStoreError, match="database is locked"):
                async with store.begin("waiting for it"):
                    pass
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [("sqlite_cache_mb", 1), ("sqlite_cache_mb", 5000), ("sqlite_checkpoint_mb", 0)],
)
def test_sqlite_tuning_out_of_range_is_refused(key: str, value: int) -> None:
    with pytest.raises(ValidationError, match=key):
        DatabaseSettings.model_validate({key: value})


@pytest.fixture
async def fresh_store(fresh_database_url: str) -> AsyncIterator[Store]:
    store = Store.open(DatabaseSettings(url=fresh_database_url))
    try:
        yield store
    finally:
        await store.close()


async def test_migrated_schema_matches_the_table_definitions(fresh_store: Store) -> None:
    await fresh_store.migrate()
    async with fresh_store.engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []


async def test_downgrade_to_base_and_up_again(fresh_store: Store) -> None:
    await fresh_store.migrate()
    async with fresh_store.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
        assert set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names())) == {
            "alembic_version"
        }
    await fresh_store.migrate()
    async with fresh_store.engine.connect() as conn:
        assert set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names())) == TABLES


async def test_concurrent_migrations_do_not_collide(fresh_database_url: str) -> None:
    # N instances starting together against one database (the advisory lock on PostgreSQL,
    # the write lock on SQLite) all end at head.
    stores = [Store.open(DatabaseSettings(url=fresh_database_url)) for _ in range(3)]
    try:
        await asyncio.gather(*(store.migrate() for store in stores))
        async with stores[0].engine.connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
    finally:
        for store in stores:
            await store.close()


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 11, 25, 8, 0, tzinfo=UTC),
        datetime(2024, 11, 25, 8, 0, 0, 40_000, tzinfo=UTC),
        datetime(2024, 1, 1, 1, 0, 0, 123_000, tzinfo=timezone(timedelta(hours=2))),
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2024, 7, 1, 13, 0, tzinfo=ZoneInfo("Europe/London")),
        datetime(2024, 1, 1, 13, 0, tzinfo=ZoneInfo("Europe/London")),
        TypeAdapter(datetime).validate_json('"2024-11-25T08:00:00.041Z"'),  # as ingest has it
    ],
)
def test_sqlite_timestamps_are_stored_as_sqlalchemy_would_store_them(value: datetime) -> None:
    # UtcDateTime formats SQLite text itself (for speed); rows written before, and every
    # range query, rely on SQLAlchemy's DATETIME text, so the two must agree exactly.
    dialect = sqlite.dialect()
    column = UtcDateTime()
    fast = column.bind_processor(dialect)
    standard = column.impl_instance.dialect_impl(dialect).bind_processor(dialect)
    assert fast is not None
    assert standard is not None
    assert fast(value) == standard(column.process_bind_param(value, dialect))


@pytest.mark.parametrize(
    "text",
    [
        "2024-11-25 08:00:00.040000",  # what the store writes
        "0999-01-02 03:04:05.000006",
        "9999-12-31 23:59:59.999999",
        "2024-11-25 08:00:00",  # SQLite's CURRENT_TIMESTAMP: refused both ways
        "2024-11-25",
        None,
    ],
)
def test_sqlite_timestamps_are_read_as_sqlalchemy_would_read_them(text: str | None) -> None:
    # UtcDateTime parses SQLite text itself (for speed); the value must be the one the
    # standard DATETIME processor and process_result_value give together.
    dialect = sqlite.dialect()
    column = UtcDateTime()
    fast = column.dialect_impl(dialect).result_processor(dialect, None)
    standard = column.impl_instance.dialect_impl(dialect).result_processor(dialect, None)
    assert fast is not None
    assert standard is not None
    try:
        expected = column.process_result_value(standard(text), dialect)
    except TypeError:
        with pytest.raises(TypeError):
            fast(text)
        return
    read = fast(text)
    assert read == expected
    assert read is None or read.tzinfo is UTC


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.asyncpg.dialect()])
def test_a_naive_timestamp_is_refused_on_the_fast_path_too(dialect: sa.Dialect) -> None:
    fast = UtcDateTime().bind_processor(dialect)
    assert fast is not None
    with pytest.raises(ValueError, match="naive"):
        fast(datetime(2024, 11, 25, 8, 0))


async def test_a_timestamp_comes_back_as_the_same_instant_in_utc(fresh_store: Store) -> None:
    # PostgreSQL is handed an aware time as it is (``aware_instant``), SQLite its UTC text.
    await fresh_store.migrate()
    table = sa.Table("stamps", sa.MetaData(), sa.Column("at", UtcDateTime()))
    summer = datetime(2024, 7, 1, 9, 30, 15, 250_000, tzinfo=ZoneInfo("Europe/London"))
    times = [summer, summer.astimezone(timezone(timedelta(hours=-5))), summer.astimezone(UTC)]
    async with fresh_store.engine.begin() as conn:
        await conn.run_sync(table.create)
        await conn.execute(table.insert(), [{"at": at} for at in times])
        read = (await conn.execute(sa.select(table.c.at))).scalars().all()
    assert read == [datetime(2024, 7, 1, 8, 30, 15, 250_000, tzinfo=UTC)] * 3
    assert all(at.tzinfo is UTC for at in read)


async def test_rollups_keep_their_rows_when_rekeyed(fresh_store: Store) -> None:
    # Revision 0021 makes the movement rollups again with a new key (SQLite: copies them
    # into WITHOUT ROWID tables); what they held before must come through whole.
    await fresh_store.migrate("0020")
    bucket = datetime(2024, 3, 4, 5, tzinfo=UTC)
    fine = [
        {
            "period": period,
            "bucket": bucket + timedelta(hours=hour),
            "location": location,
            "side": side,
            "read_point": read_point,
            "item_id": item,
            "kind": "receipt",
            "site": "wh1",
            "count": hour + item,
            "quantity": 10 * hour + item,
        }
        for period in ("hour", "day")
        for hour in range(3)
        for location, read_point in (("wh1.dock", "wh1.dock.1"), ("wh1.a01", ""))
        for side in ("in", "out")
        for item in (1, 2)
    ]
    # The place rollup's rows: one item's, without it (distinct keys; the copy does not
    # need them to be the sums of the rows by item).
    places = [
        {k: v for k, v in row.items() if k != "item_id"} for row in fine if row["item_id"] == 1
    ]
    place_columns = list(places[0])
    fine_table = sa.table("history_movements", *(sa.column(key) for key in fine[0]))
    place_table = sa.table("history_place_movements", *(sa.column(key) for key in place_columns))
    async with fresh_store.engine.begin() as conn:
        await conn.execute(sa.insert(fine_table), fine)
        await conn.execute(sa.insert(place_table), places)

    async def rows(table: sa.TableClause) -> list[tuple[Any, ...]]:
        async with fresh_store.engine.connect() as conn:
            found = await conn.execute(sa.select(table))
            return sorted(tuple(str(value) for value in row) for row in found)

    before = (await rows(fine_table), await rows(place_table))
    await fresh_store.migrate()
    assert (await rows(fine_table), await rows(place_table)) == before
    assert len(before[0]) == len(fine)
    assert len(before[1]) == len(places)
    async with fresh_store.engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []
        if fresh_store.dialect == "sqlite":
            sql = await conn.scalar(
                sa.text(
                    "SELECT group_concat(sql, ';') FROM sqlite_master WHERE name IN "
                    "('history_movements', 'history_place_movements')"
                )
            )
            assert str(sql).count("WITHOUT ROWID") == 2
