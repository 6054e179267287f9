"""``pg.raw_events_per_s``: the rows of ``server.pg_events_per_s`` written by bare asyncpg.

The PostgreSQL floor under the server's PostgreSQL figure, measured in the same run against
the same PostgreSQL: the same timed batches (after the same warm-up) become the rows the
server writes for them (``bench.sqlite_floor`` builds them, with timestamps as datetimes),
and one asyncpg connection writes them into a fresh database migrated to the server's
schema (every index, constraint and foreign key it holds), one transaction per group of
one batch from each gateway (what the server groups when every gateway has one waiting):
read the event ids seen before and the units named, lock the items and locations the rows
name as the server's writers do (``server.ingest.references``), then write with
PostgreSQL's bulk paths, which are what a floor is for: ``COPY`` of the seen ids and the
ledger rows straight into their tables, ``COPY`` of the unit states into a temporary table
and one ``INSERT ... SELECT ... ON CONFLICT`` from it (the server's "newer event wins"
upsert), the balance deltas and the batch records by ``executemany``; commit
(``synchronous_commit`` as the server runs, on).

A second pass writes the same rows into another fresh database with ``executemany`` for
every table (detail ``executemany_events_per_s``): the path a plain driver loop takes.

Nothing else runs: no MQTT, no JSON, no validation, no rules, no SQLAlchemy; every row is
built before the clock starts.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from bench.figures import Figure
from bench.server_workload import BATCH_EVENTS, GATEWAYS, SITE, Batch, build_batches
from bench.sqlite_floor import RECEIVING, RECORDED_AT, _groups, _rows, _Transaction
from server.config.settings import DatabaseSettings
from server.ingest.references import HOLD
from server.store.database import Store
from wire.identifiers import gtin_of

DEFAULT_ADMIN_DSN: Final = "postgresql://postgres@127.0.0.1:5432/test"
"""Where the benchmark creates (and drops) its throw-away databases: the machine's
PostgreSQL, trust auth, as the tests use it."""

SEEN_BEFORE: Final = (
    "SELECT event_id FROM seen_events WHERE event_id IN (SELECT unnest($1::varchar[]))"
)
UNITS_NAMED: Final = (
    "SELECT epc, item_id, location_id, status, last_event_time, last_event_id, site FROM units "
    "WHERE epc IN (SELECT unnest($1::varchar[]))"
)
LEDGER_COLUMNS: Final = (
    "event_id",
    "event_time",
    "recorded_at",
    "item_id",
    "epc",
    "from_location",
    "to_location",
    "kind",
    "actor",
    "read_point",
    "quantity",
)
INSERT_SEEN: Final = "INSERT INTO seen_events (event_id, seen_at) VALUES ($1, $2)"
INSERT_LEDGER: Final = (
    "INSERT INTO ledger (event_id, event_time, recorded_at, item_id, epc, from_location, "
    "to_location, quantity, kind, actor, read_point) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10)"
)
UPSERT_BALANCE: Final = (
    "INSERT INTO balances (item_id, location_id, on_hand) VALUES ($1, $2, $3) "
    "ON CONFLICT (item_id, location_id) DO UPDATE SET on_hand = balances.on_hand + "
    "excluded.on_hand"
)
UNIT_COLUMNS: Final = (
    "epc",
    "item_id",
    "location_id",
    "status",
    "last_event_time",
    "last_event_id",
    "site",
)
UNIT_SET: Final = (
    "ON CONFLICT (epc) DO UPDATE SET item_id = excluded.item_id, "
    "location_id = excluded.location_id, status = excluded.status, "
    "last_event_time = excluded.last_event_time, last_event_id = excluded.last_event_id, "
    "site = excluded.site WHERE units.last_event_time < excluded.last_event_time OR "
    "(units.last_event_time = excluded.last_event_time AND "
    'units.last_event_id COLLATE "C" < excluded.last_event_id COLLATE "C")'
)
UPSERT_UNIT: Final = (
    "INSERT INTO units (epc, item_id, location_id, status, last_event_time, last_event_id, site) "
    f"VALUES ($1, $2, $3, $4, $5, $6, $7) {UNIT_SET}"
)
STAGE_UNITS: Final = (
    "CREATE TEMPORARY TABLE stage_units (LIKE units INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
UNITS_FROM_STAGE: Final = (
    "INSERT INTO units (epc, item_id, location_id, status, last_event_time, last_event_id, site) "
    "SELECT epc, item_id, location_id, status, last_event_time, last_event_id, site "
    f"FROM stage_units ORDER BY epc {UNIT_SET}"
)
INSERT_BATCH: Final = (
    "INSERT INTO batches (batch_id, site, gateway, epoch, seq_first, seq_last, events, applied, "
    "duplicates, dead_letters, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9)"
)


@dataclass(frozen=True, slots=True)
class _PgTransaction:
    rows: _Transaction
    event_ids: list[str]
    epcs: list[str]
    ledger: list[tuple[Any, ...]]
    """The ledger rows with their quantity (1) last, for COPY."""
    held_items: list[int]
    held_locations: list[str]
    """What the rows name, locked as the server's writers lock it (``HOLD``)."""


async def create_database(admin_dsn: str, prefix: str) -> str:
    """A new, empty PostgreSQL database named ``prefix`` and a random suffix; its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def fresh_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (its name), dropped afterwards."""
    name = await create_database(admin_dsn, prefix)
    try:
        yield name
    finally:
        await drop_database(admin_dsn, name)


def dsn_of(admin_dsn: str, database: str) -> str:
    """The admin DSN pointed at another database on the same server."""
    return f"{admin_dsn.rpartition('/')[0]}/{database}"


def sqlalchemy_url(dsn: str) -> str:
    """The server's ``[database] url`` for an asyncpg DSN."""
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _seed(conn: Any, all_batches: list[list[Batch]]) -> dict[str, int]:
    """The site's locations and the workload's items, as the server's warm-up leaves them."""
    gtins = sorted(
        {
            gtin
            for mine in all_batches
            for batch in mine
            for epc in _epcs(batch)
            if (gtin := gtin_of(epc)) is not None
        }
    )
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO locations (id, parent, kind, created_at) VALUES ($1, $2, $3, $4)",
            [(SITE, None, "site", RECORDED_AT), (RECEIVING, SITE, "zone", RECORDED_AT)],
        )
        await conn.executemany(
            "INSERT INTO items (sku, gtin, name, reviewed, created_at) "
            "VALUES ($1, $2, $3, false, $4)",
            [(gtin, gtin, f"Unreviewed item {gtin}", RECORDED_AT) for gtin in gtins],
        )
    return {gtin: int(item_id) for item_id, gtin in await conn.fetch("SELECT id, gtin FROM items")}


def _epcs(batch: Batch) -> list[str]:
    return [event["epc"] for event in json.loads(batch.payload)["events"]]


def _same(at: datetime) -> datetime:
    return at


async def _read_and_lock(conn: Any, tx: _PgTransaction) -> None:
    """What the server does in a transaction before it writes: read the ids seen before
    and the units named, and lock what the rows name (``HOLD``)."""
    if await conn.fetch(SEEN_BEFORE, tx.event_ids):
        raise RuntimeError("an event id was seen before; the workload repeats itself")
    await conn.fetch(UNITS_NAMED, tx.epcs)
    if await conn.fetch(HOLD, tx.held_items, tx.held_locations):
        raise RuntimeError("a row names an item or location that does not exist")


async def _write_copy(conn: Any, tx: _PgTransaction) -> None:
    rows = tx.rows
    async with conn.transaction():
        await _read_and_lock(conn, tx)
        await conn.copy_records_to_table("seen_events", records=rows.seen)
        await conn.copy_records_to_table("ledger", records=tx.ledger, columns=LEDGER_COLUMNS)
        await conn.copy_records_to_table("stage_units", records=rows.units, columns=UNIT_COLUMNS)
        await conn.execute(UNITS_FROM_STAGE)
        await conn.executemany(INSERT_BATCH, rows.batches)
        await conn.executemany(UPSERT_BALANCE, rows.balances)


async def _write_executemany(conn: Any, tx: _PgTransaction) -> None:
    rows = tx.rows
    async with conn.transaction():
        await _read_and_lock(conn, tx)
        await conn.executemany(INSERT_SEEN, rows.seen)
        await conn.executemany(INSERT_LEDGER, rows.ledger)
        await conn.executemany(UPSERT_UNIT, rows.units)
        await conn.executemany(INSERT_BATCH, rows.batches)
        await conn.executemany(UPSERT_BALANCE, rows.balances)


async def _migrate(dsn: str) -> None:
    store = Store.open(DatabaseSettings(url=sqlalchemy_url(dsn)))
    try:
        await store.migrate()
    finally:
        await store.close()


async def timed_writes(
    dsn: str, all_batches: list[list[Batch]], warmup_batches: int, *, copy: bool
) -> tuple[int, float, int]:
    """Write every transaction into the (empty) database at ``dsn``.

    Returns:
        The timed events, their seconds, and the ledger rows written in all.
    """
    await _migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(STAGE_UNITS)
        item_ids = await _seed(conn, all_batches)
        transactions = []
        for group in _groups(all_batches):
            rows = _rows(group, item_ids, _same)
            transactions.append(
                _PgTransaction(
                    rows,
                    [row[0] for row in rows.seen],
                    [row[0] for row in rows.units],
                    [(*row, 1) for row in rows.ledger],
                    sorted({item_id for item_id, _, _ in rows.balances}),
                    sorted({location for _, location, _ in rows.balances}),
                )
            )
        write = _write_copy if copy else _write_executemany
        for tx in transactions[:warmup_batches]:
            await write(conn, tx)
        timed = transactions[warmup_batches:]
        started = time.perf_counter()
        for tx in timed:
            await write(conn, tx)
        seconds = time.perf_counter() - started
        ledger_rows = int(await conn.fetchval("SELECT COUNT(*) FROM ledger"))
    finally:
        await conn.close()
    written = sum(tx.rows.events for tx in transactions)
    if ledger_rows != written:
        raise RuntimeError(f"ledger holds {ledger_rows} rows, {written} were written")
    return sum(tx.rows.events for tx in timed), seconds, ledger_rows


Tables = dict[str, list[tuple[Any, ...]]]


async def _both(
    admin_dsn: str,
    all_batches: list[list[Batch]],
    warmup_batches: int,
    keep: Tables | None,
    executemany_pass: bool,
) -> tuple[tuple[int, float, int], float | None]:
    async with fresh_database(admin_dsn, "stockgate_bench_pg_raw") as name:
        copied = await timed_writes(dsn_of(admin_dsn, name), all_batches, warmup_batches, copy=True)
        if keep is not None:
            keep.update(await table_rows(dsn_of(admin_dsn, name)))
    if not executemany_pass:
        return copied, None
    async with fresh_database(admin_dsn, "stockgate_bench_pg_many") as name:
        events, seconds, _ = await timed_writes(
            dsn_of(admin_dsn, name), all_batches, warmup_batches, copy=False
        )
    return copied, events / seconds


SAME_ROWS: Final = {
    "ledger": (
        "SELECT l.event_id, l.event_time, i.gtin, l.epc, l.from_location, l.to_location, "
        "l.quantity, l.kind, l.reason, l.actor, l.read_point, l.note, l.reverses "
        "FROM ledger l JOIN items i ON i.id = l.item_id ORDER BY l.event_id"
    ),
    "units": (
        "SELECT u.epc, i.gtin, u.location_id, u.status, u.last_event_time, u.last_event_id, "
        "u.site FROM units u JOIN items i ON i.id = u.item_id ORDER BY u.epc"
    ),
    "balances": (
        "SELECT i.gtin, b.location_id, b.on_hand FROM balances b JOIN items i ON i.id = b.item_id "
        "ORDER BY i.gtin, b.location_id"
    ),
    "seen_events": "SELECT event_id FROM seen_events ORDER BY event_id",
    "batches": (
        "SELECT batch_id, site, gateway, epoch, seq_first, seq_last, events, applied, "
        "duplicates, dead_letters FROM batches ORDER BY batch_id"
    ),
    "items": "SELECT sku, gtin, name, reviewed FROM items ORDER BY gtin",
    "locations": "SELECT id, parent, kind FROM locations ORDER BY id",
}
"""The rows compared between the floor's database and the server's (ids aside)."""


async def table_rows(dsn: str) -> Tables:
    """Every ``SAME_ROWS`` table of the database at ``dsn``, in a stable order."""
    conn = await asyncpg.connect(dsn)
    try:
        return {
            table: [tuple(row) for row in await conn.fetch(sql)] for table, sql in SAME_ROWS.items()
        }
    finally:
        await conn.close()


def raw_events(
    admin_dsn: str,
    batches_per_gateway: int,
    *,
    warmup_batches: int,
    rows_out: Tables | None = None,
    executemany_pass: bool = True,
) -> Figure:
    """Write the server workload's rows with asyncpg alone and time the timed part.

    Args:
        admin_dsn: a PostgreSQL database to connect to for creating the fresh ones.
        batches_per_gateway: timed batches per gateway.
        warmup_batches: untimed batches per gateway first.
        rows_out: if given, receives the COPY pass's tables (``SAME_ROWS``), for comparison
            with the server's.
        executemany_pass: also time the executemany pass (detail
            ``executemany_events_per_s``; None without it).
    """
    all_batches = build_batches(warmup_batches + batches_per_gateway)
    (events, seconds, ledger_rows), many_rate = asyncio.run(
        _both(admin_dsn, all_batches, warmup_batches, rows_out, executemany_pass)
    )
    transactions = batches_per_gateway
    return Figure(
        key="pg.raw_events_per_s",
        value=round(events / seconds, 1),
        unit="events/s",
        how=(
            f"The rows server.pg_events_per_s writes for its {transactions * GATEWAYS} timed "
            f"batches ({events:,} events), written by bare asyncpg into a fresh PostgreSQL "
            "database migrated to the server's schema, one connection, "
            f"{GATEWAYS} batches ({GATEWAYS * BATCH_EVENTS:,} events) per transaction: read the "
            "seen ids and units named, lock the items and locations the rows name (the "
            "server's writers' lock, which replaces foreign keys on PostgreSQL), COPY the seen "
            "ids and ledger rows into their tables, "
            "COPY the unit states into a temporary table and upsert them from it in one "
            "statement, executemany the batch records and balance deltas, commit (durable); "
            "after the same warm-up, rows built before the clock started. The database floor: "
            "no MQTT, validation, rules or SQLAlchemy. Then the same into another fresh "
            "database with executemany for every table."
        ),
        detail={
            "events": events,
            "transactions": transactions,
            "events_per_transaction": GATEWAYS * BATCH_EVENTS,
            "seconds": round(seconds, 3),
            "ledger_rows_after": ledger_rows,
            "executemany_events_per_s": round(many_rate, 1) if many_rate is not None else None,
        },
    )
