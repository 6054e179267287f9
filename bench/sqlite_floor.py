"""``sqlite.raw_events_per_s``: the rows of ``server.events_per_s`` written by bare sqlite3.

The database floor under the server figure, measured in the same run on the same disk: the
same timed batches (after the same warm-up) become the rows the server writes for them,
and plain ``sqlite3`` writes them into a file migrated to the server's schema (every index
and constraint), with the connection settings the server uses (``server.store.database``: WAL,
``synchronous=FULL``, the default page cache and checkpoint size). Per transaction, as the
server does for a group of batches: read the event ids seen before and the units named,
insert the seen ids, the ledger rows, the balance deltas, the unit states and the batch
records, commit. One transaction holds one batch of each gateway (what the server groups
when every gateway has one waiting).

Nothing else runs: no MQTT, no JSON, no validation, no rules, no SQLAlchemy; every row is
built before the clock starts. So the server can at best approach this figure.

The same rows are then written once more into a fresh file with ``synchronous=OFF``
(detail ``synchronous_off_events_per_s``): no fsync at all, so what is left is SQLite's CPU
work on this machine. It says whether a figure out of reach is a matter of the disk (and of
durability settings) or of the CPU.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.figures import Figure
from bench.files import remove_database
from bench.server_workload import BATCH_EVENTS, GATEWAYS, SITE, Batch, build_batches
from server.config.settings import DatabaseSettings
from server.store.database import Store, sqlite_pragmas
from server.store.schema.core import sqlite_utc_text
from wire.identifiers import gtin_of

RECEIVING: Final = f"{SITE}.receiving"
RECORDED_AT: Final = datetime(2024, 11, 26, 8, 0, tzinfo=UTC)

SEEN_BEFORE = "SELECT event_id FROM seen_events WHERE event_id IN (SELECT value FROM json_each(?))"
UNITS_NAMED = (
    "SELECT epc, item_id, location_id, status, last_event_time, last_event_id, site FROM units "
    "WHERE epc IN (SELECT value FROM json_each(?))"
)
INSERT_SEEN = "INSERT INTO seen_events (event_id, seen_at) VALUES (?, ?)"
INSERT_LEDGER = (
    "INSERT INTO ledger (event_id, event_time, recorded_at, item_id, epc, from_location, "
    "to_location, quantity, kind, actor, read_point) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
)
UPSERT_BALANCE = (
    "INSERT INTO balances (item_id, location_id, on_hand) VALUES (?, ?, ?) "
    "ON CONFLICT (item_id, location_id) DO UPDATE SET on_hand = balances.on_hand + "
    "excluded.on_hand"
)
UPSERT_UNIT = (
    "INSERT INTO units (epc, item_id, location_id, status, last_event_time, last_event_id, site) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (epc) DO UPDATE SET item_id = excluded.item_id, "
    "location_id = excluded.location_id, status = excluded.status, "
    "last_event_time = excluded.last_event_time, last_event_id = excluded.last_event_id, "
    "site = excluded.site WHERE units.last_event_time < excluded.last_event_time OR "
    "(units.last_event_time = excluded.last_event_time AND "
    "units.last_event_id < excluded.last_event_id)"
)
INSERT_BATCH = (
    "INSERT INTO batches (batch_id, site, gateway, epoch, seq_first, seq_last, events, applied, "
    "duplicates, dead_letters, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)"
)


@dataclass(frozen=True, slots=True)
class _Transaction:
    """The parameters of one transaction's statements, built before the clock starts."""

    event_ids: str
    epcs: str
    seen: list[tuple[str, str]]
    ledger: list[tuple[Any, ...]]
    balances: list[tuple[int, str, int]]
    units: list[tuple[Any, ...]]
    batches: list[tuple[Any, ...]]

    @property
    def events(self) -> int:
        return len(self.seen)


def _text(at: datetime) -> str:
    """The text the server stores for ``at``."""
    text = sqlite_utc_text(at)
    assert text is not None
    return text


def _rows(
    group: Sequence[Batch], item_ids: dict[str, int], stamp: Callable[[datetime], Any] = _text
) -> _Transaction:
    """One transaction's rows; ``stamp`` gives a timestamp as the database takes it."""
    recorded = stamp(RECORDED_AT)
    seen: list[tuple[str, str]] = []
    ledger: list[tuple[Any, ...]] = []
    units: list[tuple[Any, ...]] = []
    deltas: dict[tuple[int, str], int] = defaultdict(int)
    headers: list[tuple[Any, ...]] = []
    for batch in group:
        body = json.loads(batch.payload)
        for event in body["events"]:
            at = stamp(datetime.fromisoformat(event["event_time"]))
            gtin = gtin_of(event["epc"])
            assert gtin is not None
            item = item_ids[gtin]
            out = event["direction"] == "out"
            source, target = (RECEIVING, None) if out else (None, RECEIVING)
            seen.append((event["event_id"], recorded))
            ledger.append(
                (
                    event["event_id"],
                    at,
                    recorded,
                    item,
                    event["epc"],
                    source,
                    target,
                    "shipment" if out else "receipt",
                    body["gateway"],
                    event["read_point"],
                )
            )
            deltas[(item, RECEIVING)] += -1 if out else 1
            units.append(
                (
                    event["epc"],
                    item,
                    target,
                    "shipped" if out else "in_stock",
                    at,
                    event["event_id"],
                    SITE,
                )
            )
        headers.append(
            (
                body["batch_id"],
                body["site"],
                body["gateway"],
                body["epoch"],
                body["seq_first"],
                body["seq_last"],
                len(body["events"]),
                len(body["events"]),
                recorded,
            )
        )
    return _Transaction(
        event_ids=json.dumps([row[0] for row in seen]),
        epcs=json.dumps([row[0] for row in units]),
        seen=seen,
        ledger=ledger,
        balances=[(item, location, delta) for (item, location), delta in sorted(deltas.items())],
        units=sorted(units),
        batches=headers,
    )


def _write(conn: sqlite3.Connection, tx: _Transaction) -> None:
    conn.execute("BEGIN IMMEDIATE")
    if conn.execute(SEEN_BEFORE, (tx.event_ids,)).fetchall():
        raise RuntimeError("an event id was seen before; the workload repeats itself")
    conn.execute(UNITS_NAMED, (tx.epcs,)).fetchall()
    conn.executemany(INSERT_SEEN, tx.seen)
    conn.executemany(INSERT_LEDGER, tx.ledger)
    conn.executemany(UPSERT_BALANCE, tx.balances)
    conn.executemany(UPSERT_UNIT, tx.units)
    conn.executemany(INSERT_BATCH, tx.batches)
    conn.execute("COMMIT")


def _groups(per_gateway: list[list[Batch]]) -> Iterator[list[Batch]]:
    """One batch of each gateway per transaction, in publishing order."""
    for index in range(len(per_gateway[0])):
        yield [mine[index] for mine in per_gateway]


async def _migrate(settings: DatabaseSettings) -> None:
    store = Store.open(settings)
    try:
        await store.migrate()
    finally:
        await store.close()


def _timed_writes(
    workdir: Path, name: str, all_batches: list[list[Batch]], warmup_batches: int, *extra: str
) -> tuple[list[_Transaction], float, int]:
    """Write every transaction into a fresh file ``name``, ``extra`` pragmas after the server's.

    Returns:
        The timed transactions, their seconds, and the ledger rows written in all.
    """
    database = workdir / name
    remove_database(database)
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{database}")
    asyncio.run(_migrate(settings))
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        for pragma in (*sqlite_pragmas(settings, page_size), *extra):
            conn.execute(pragma)
        item_ids = _seed(conn, all_batches)
        transactions = [_rows(group, item_ids) for group in _groups(all_batches)]
        for tx in transactions[:warmup_batches]:
            _write(conn, tx)
        timed = transactions[warmup_batches:]
        started = time.perf_counter()
        for tx in timed:
            _write(conn, tx)
        seconds = time.perf_counter() - started
        ledger_rows = int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
    finally:
        conn.close()
    written = sum(tx.events for tx in transactions)
    if ledger_rows != written:
        raise RuntimeError(f"ledger holds {ledger_rows} rows, {written} were written")
    return timed, seconds, ledger_rows


def raw_events(workdir: Path, batches_per_gateway: int, *, warmup_batches: int) -> Figure:
    """Write the server workload's rows with sqlite3 alone and time the timed part.

    A second pass writes the same into another file with ``synchronous=OFF`` (no fsync at
    all): what SQLite costs on this CPU alone, durability aside.
    """
    all_batches = build_batches(warmup_batches + batches_per_gateway)
    timed, seconds, ledger_rows = _timed_writes(
        workdir, "sqlite-raw.db", all_batches, warmup_batches
    )
    events = sum(tx.events for tx in timed)
    _, unsynced_s, _ = _timed_writes(
        workdir, "sqlite-raw-nosync.db", all_batches, warmup_batches, "PRAGMA synchronous=OFF"
    )
    return Figure(
        key="sqlite.raw_events_per_s",
        value=round(events / seconds, 1),
        unit="events/s",
        how=(
            f"The rows server.events_per_s writes for its {len(timed) * GATEWAYS} timed "
            f"batches ({events:,} events), written by bare sqlite3 into a file migrated to the "
            "server's schema, with the server's connection settings (WAL, synchronous=FULL, "
            f"its cache and checkpoint size), {GATEWAYS} batches ({GATEWAYS * BATCH_EVENTS:,} "
            "events) per transaction: read the seen ids and units named, insert seen ids, "
            "ledger rows, balance deltas, unit states and batch records, commit; after the "
            "same warm-up, rows built before the clock started. The database floor: no MQTT, "
            "validation, rules or SQLAlchemy. Then the same again into a fresh file with "
            "synchronous=OFF (no fsync): the CPU's share alone."
        ),
        detail={
            "events": events,
            "transactions": len(timed),
            "events_per_transaction": GATEWAYS * BATCH_EVENTS,
            "seconds": round(seconds, 3),
            "ledger_rows_after": ledger_rows,
            "synchronous_off_events_per_s": round(events / unsynced_s, 1),
        },
    )


def _seed(conn: sqlite3.Connection, all_batches: list[list[Batch]]) -> dict[str, int]:
    """The site's locations and the workload's items, as the server's warm-up leaves them."""
    created = _text(RECORDED_AT)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO locations (id, parent, kind, created_at) VALUES (?, ?, ?, ?)",
        [(SITE, None, "site", created), (RECEIVING, SITE, "zone", created)],
    )
    gtins = sorted(
        {
            gtin
            for mine in all_batches
            for batch in mine
            for event in json.loads(batch.payload)["events"]
            if (gtin := gtin_of(event["epc"])) is not None
        }
    )
    conn.executemany(
        "INSERT INTO items (sku, gtin, name, reviewed, created_at) VALUES (?, ?, ?, 0, ?)",
        [(gtin, gtin, f"Unreviewed item {gtin}", created) for gtin in gtins],
    )
    conn.execute("COMMIT")
    return {gtin: int(item_id) for item_id, gtin in conn.execute("SELECT id, gtin FROM items")}
