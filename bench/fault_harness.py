"""The fault matrix's harness: the processes a scenario breaks, and the count afterwards.

A scenario (``bench.faults``) runs a real edge path in this process (``open_edge``: the
outbox, the publisher and the MQTT client of ``edge/``, fed ``events`` receipts of distinct
tagged units at one dock door) against real ``stockgate server`` processes
(``FaultServer``, on a fresh PostgreSQL database from ``fresh_database`` or on SQLite).
The ground truth is the set of events appended to the outbox; ``count_ledger`` and
``count_sqlite_ledger`` then read the ledger back into a ``FaultResult``:

- ``lost``: events appended and not in the ledger (must be 0);
- ``doubled``: ledger rows beyond one per event id (must be 0), and balances must add up
  to the number of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final

import asyncpg

from bench.broker import ChildProcess, free_port
from bench.server_proc import SERVER_CLI, ServerStartError, spawn_server, wait_healthy
from edge.buffer.outbox import Outbox
from edge.config import BufferSettings
from edge.publisher import Publisher
from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from wire.models import Event, now_utc

SITE: Final = "wh1"
GATEWAY: Final = "gw-fault"
READ_POINT: Final = "wh1.dock.1"
API_KEY: Final = "fault-viewer-key-0123456789"
DRAIN_TIMEOUT_S: Final = 180.0
RESEND_S: Final = 1.0
RESEND_MAX_S: Final = 8.0
OUTAGE_EDGE: Final = BufferSettings()
"""``broker_down`` runs the edge's shipped timers: re-send after 10 s doubling to 300 s,
8 batches in flight, drain at 2,000 events/s."""
CHUNK: Final = 50
CHUNK_PAUSE_S: Final = 0.02


class FaultError(RuntimeError):
    """A scenario could not run (a process did not start, the stream did not drain)."""


@dataclass
class FaultResult:
    """One scenario's figures."""

    scenario: str
    events: int
    applied: int = 0
    """Distinct event ids in the ledger."""
    ledger_rows: int = 0
    on_hand: int = 0
    lost: int = 0
    doubled: int = 0
    recover_s: float = 0.0
    resends: int = 0
    batches: int = 0
    detail: dict[str, object] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """Every event applied once: nothing lost, nothing doubled, balances agree."""
        return (
            self.lost == 0
            and self.doubled == 0
            and self.applied == self.events
            and self.on_hand == self.events
        )


class FaultServer(ChildProcess):
    """``stockgate server`` on PostgreSQL, as a child process that may be SIGKILLed."""

    stop_timeout_s = 30.0

    def __init__(
        self, workdir: Path, name: str, mqtt_url: str, db_url: str, *, shared: bool
    ) -> None:
        super().__init__()
        self.name = name
        self.port = free_port()
        self.config = workdir / f"{name}.toml"
        self.log = workdir / f"{name}.log"
        self.config.write_text(
            "\n".join(
                [
                    "[mqtt]",
                    f'url = "{mqtt_url}"',
                    f'client_id = "{name}"',
                    "[database]",
                    f'url = "{db_url}"',
                    "[api]",
                    'host = "127.0.0.1"',
                    f"port = {self.port}",
                    "[[api.keys]]",
                    f'key = "{API_KEY}"',
                    'role = "viewer"',
                    "[[read_points]]",
                    f'id = "{READ_POINT}"',
                    'inbound_location = "wh1.receiving"',
                    "[ingest]",
                    f"shared_subscription = {'true' if shared else 'false'}",
                ]
            )
            + "\n",
            encoding="utf-8",
        )

    def start(self) -> None:
        self._proc = spawn_server(SERVER_CLI, self.config, self.log)
        try:
            wait_healthy(self._proc, f"http://127.0.0.1:{self.port}", self.log)
        except ServerStartError as err:
            raise FaultError(f"{self.name}: {err}") from err

    @property
    def running(self) -> bool:
        """The process is alive (it has not exited or crashed)."""
        return self._proc is not None and self._proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no clean shutdown, whatever transaction is open dies with it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)


def pg_dsn(database: str) -> str:
    host = os.environ.get("STOCKGATE_TEST_PG_HOST", "127.0.0.1")
    port = os.environ.get("STOCKGATE_TEST_PG_PORT", "5432")
    return f"postgresql://postgres@{host}:{port}/{database}"


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    name = f"stockgate_fault_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_dsn("test"), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(pg_dsn("test"), timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _receipt(serial: int, ahead: timedelta) -> Callable[[str], Event]:
    def build(event_id: str) -> Event:
        return Event(
            event_id=event_id,
            event_time=now_utc() + ahead,
            biz_step="receiving",
            read_point=READ_POINT,
            epc=f"urn:epc:id:sgtin:0614141.812345.{serial}",
            direction="in",
            source="llrp",
        )

    return build


class Edge:
    """The edge's outbox, publisher and MQTT client, fed ``events`` receipts in chunks.

    With ``spread_s``, the first third is read at once and the rest only after
    ``fault_started`` is set, at a steady pace over ``spread_s`` (a door that keeps reading
    through the fault).
    """

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        client: MqttClient,
        events: int,
        ahead: timedelta,
        spread_s: float | None = None,
    ):
        self.outbox = outbox
        self.publisher = publisher
        self.client = client
        self.events = events
        self.appended = 0
        self.fault_started = asyncio.Event()
        self._ahead = ahead
        self.spread_s = spread_s

    def _append(self, count: int) -> None:
        for _ in range(count):
            self.appended += 1
            self.outbox.append(_receipt(self.appended, self._ahead))

    async def feed(self) -> None:
        first = self.events if self.spread_s is None else first_part(self.events)
        while self.appended < first:
            self._append(min(CHUNK, first - self.appended))
            await asyncio.sleep(CHUNK_PAUSE_S)
        if self.spread_s is not None and self.appended < self.events:
            await self.fault_started.wait()
            began = time.monotonic()
            rest = self.events - self.appended
            for number in range(1, rest + 1):
                # Event n of the rest is read in the middle of the n-th of ``rest`` equal
                # slices of the outage.
                due = began + self.spread_s * (number - 0.5) / rest
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                self._append(1)
        await self.outbox.flush()

    async def acked_at_least(self, count: int) -> None:
        while self.publisher.events_acked < count:  # noqa: ASYNC110 - a counter, no event
            await asyncio.sleep(0.05)

    async def drained(self) -> None:
        while self.appended < self.events or self.outbox.depth():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def first_part(events: int) -> int:
    """Events acknowledged before the fault is injected."""
    return min(events // 3, events - 1)


@contextlib.asynccontextmanager
async def open_edge(
    workdir: Path,
    mqtt_url: str,
    events: int,
    ahead: timedelta,
    *,
    spread_s: float | None = None,
    shipped_timers: bool = False,
) -> AsyncIterator[Edge]:
    async with (
        Outbox.open(workdir / "outbox.db", GATEWAY, commit_interval_ms=50) as outbox,
        MqttClient(MqttSettings(url=mqtt_url), f"edge-{GATEWAY}") as client,
    ):
        publisher = Publisher(
            outbox,
            client,
            site=SITE,
            gateway=GATEWAY,
            batch_size=100,
            max_in_flight=OUTAGE_EDGE.max_in_flight if shipped_timers else 4,
            resend_after_s=OUTAGE_EDGE.resend_after_s if shipped_timers else RESEND_S,
            resend_max_s=OUTAGE_EDGE.resend_max_s if shipped_timers else RESEND_MAX_S,
            drain_rate_per_s=OUTAGE_EDGE.drain_rate_per_s if shipped_timers else 0.0,
        )
        edge = Edge(outbox, publisher, client, events, ahead, spread_s)
        tasks = [
            asyncio.create_task(publisher.run(), name="fault-publisher"),
            asyncio.create_task(edge.feed(), name="fault-feed"),
        ]
        try:
            yield edge
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def count_ledger(database: str, result: FaultResult) -> None:
    conn = await asyncpg.connect(pg_dsn(database), timeout=10)
    try:
        result.ledger_rows = int(await conn.fetchval("SELECT count(*) FROM ledger"))
        result.applied = int(await conn.fetchval("SELECT count(DISTINCT event_id) FROM ledger"))
        result.on_hand = int(await conn.fetchval("SELECT coalesce(sum(on_hand), 0) FROM balances"))
        letters = await conn.fetch(
            "SELECT coalesce(kind, '') AS kind, count(*) AS n FROM dead_letters GROUP BY 1"
        )
        result.detail["dead_letters"] = {row["kind"]: int(row["n"]) for row in letters}
    finally:
        await conn.close()
    result.lost = result.events - result.applied
    result.doubled = result.ledger_rows - result.applied


def count_sqlite_ledger(database: Path, result: FaultResult) -> None:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        result.ledger_rows = int(conn.execute("SELECT count(*) FROM ledger").fetchone()[0])
        result.applied = int(
            conn.execute("SELECT count(DISTINCT event_id) FROM ledger").fetchone()[0]
        )
        result.on_hand = int(
            conn.execute("SELECT coalesce(sum(on_hand), 0) FROM balances").fetchone()[0]
        )
        letters = conn.execute(
            "SELECT coalesce(kind, ''), count(*) FROM dead_letters GROUP BY 1"
        ).fetchall()
        result.detail["dead_letters"] = {str(kind): int(n) for kind, n in letters}
    result.lost = result.events - result.applied
    result.doubled = result.ledger_rows - result.applied
