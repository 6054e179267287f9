"""The fault matrix: real processes broken mid-stream, the ledger checked against the truth.

Each scenario runs a real edge path (the outbox, the publisher and the MQTT client of
``edge/``, in this process) against real ``stockgate server`` processes, a real Mosquitto
(no persistence) and a real PostgreSQL, and breaks one of them while events flow. The
ground truth is the set of events appended to the outbox: ``EVENTS`` receipts of distinct
tagged units at one dock door. At the end the ledger must hold each event exactly once:

- ``lost``: events appended and not in the ledger (must be 0);
- ``doubled``: ledger rows beyond one per event id (must be 0), and balances must add up
  to the number of events;
- ``recover_s``: from the fault's end to the last event acknowledged to the edge.

Scenarios (``SCENARIOS``): ``server_kill9`` (SIGKILL of the server while it applies),
``broker_restart`` (Mosquitto without persistence stopped and started: everything in
flight in it is gone), ``broker_down`` (the broker away for ``OUTAGE_S`` while events keep
coming; the figure counts the edge's re-sends, bounded by its backoff), ``pg_conn_killed``
(the server's PostgreSQL connections terminated mid-batch, twice), ``shared_sub_kill9``
(two server instances on a shared subscription, one SIGKILLed: Mosquitto may lose the
QoS 1 messages it had handed to it, the edge's re-sends cover them) and ``clock_ahead``
(the gateway's clock 1 h ahead: every event quarantined, none applied, then applied once by
a replay when the server's clock has caught up).

``python -m bench --only faults`` records the figures; ``tests/e2e/test_fault_matrix.py``
runs each scenario at a smaller size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final

import asyncpg
import httpx

from bench.broker import ChildProcess, Mosquitto, free_port
from edge.buffer.outbox import Outbox
from edge.publisher import Publisher
from stockgate.mqtt import MqttClient
from stockgate.settings import MqttSettings
from wire.models import Event, now_utc

REPO: Final = Path(__file__).resolve().parent.parent
SCENARIOS: Final = (
    "server_kill9",
    "broker_restart",
    "broker_down",
    "pg_conn_killed",
    "shared_sub_kill9",
    "clock_ahead",
)
SITE: Final = "wh1"
GATEWAY: Final = "gw-fault"
READ_POINT: Final = "wh1.dock.1"
API_KEY: Final = "fault-viewer-key-0123456789"
START_TIMEOUT_S: Final = 60.0
DRAIN_TIMEOUT_S: Final = 180.0
RESEND_S: Final = 1.0
RESEND_MAX_S: Final = 8.0
OUTAGE_S: Final = 6.0
"""The broker outage of ``broker_down``: 6 resend periods of ``RESEND_S``, the shape of a
10-minute outage at the default 10 s (60 periods) with the backoff capped earlier."""
CHUNK: Final = 50
CHUNK_PAUSE_S: Final = 0.02
CLOCK_AHEAD: Final = timedelta(hours=1)


HOW: Final = {
    "server_kill9": "SIGKILL of the server while it applies a third of the stream; restarted "
    "1 s later; the edge re-sends what was not acked.",
    "broker_restart": "Mosquitto without persistence stopped and started at once mid-stream "
    "(everything in flight in it lost).",
    "broker_down": f"Mosquitto away for {OUTAGE_S:g} s mid-stream while events keep coming "
    f"(resend {RESEND_S:g} s doubling to {RESEND_MAX_S:g} s; resends counted).",
    "pg_conn_killed": "The server's PostgreSQL connections terminated twice mid-stream.",
    "shared_sub_kill9": "Two servers on a shared subscription; one SIGKILLed mid-stream.",
    "clock_ahead": "The gateway's clock 1 h ahead: all quarantined (clock_skew), then "
    "replayed once the server's clock has passed them.",
}
"""How each scenario breaks the system, for the report."""


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
        command = [sys.executable, "-c", "from stockgate.cli import main; main()"]
        command += ["server", "--config", str(self.config), "--log-level", "warning"]
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise FaultError(f"{self.name} exited; see {self.log}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise FaultError(f"{self.name} not healthy within {START_TIMEOUT_S:g}s; see {self.log}")

    def kill9(self) -> None:
        """SIGKILL: no clean shutdown, whatever transaction is open dies with it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)


def _pg_dsn(database: str) -> str:
    host = os.environ.get("STOCKGATE_TEST_PG_HOST", "127.0.0.1")
    port = os.environ.get("STOCKGATE_TEST_PG_PORT", "5432")
    return f"postgresql://postgres@{host}:{port}/{database}"


@contextlib.asynccontextmanager
async def _database() -> AsyncIterator[str]:
    name = f"stockgate_fault_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_pg_dsn("test"), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(_pg_dsn("test"), timeout=10)
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
    """The edge's outbox, publisher and MQTT client, fed ``events`` receipts in chunks."""

    def __init__(self, outbox: Outbox, publisher: Publisher, events: int, ahead: timedelta):
        self.outbox = outbox
        self.publisher = publisher
        self.events = events
        self.appended = 0
        self._ahead = ahead

    async def feed(self) -> None:
        while self.appended < self.events:
            for _ in range(min(CHUNK, self.events - self.appended)):
                self.appended += 1
                self.outbox.append(_receipt(self.appended, self._ahead))
            await asyncio.sleep(CHUNK_PAUSE_S)
        await self.outbox.flush()

    async def acked_at_least(self, count: int) -> None:
        while self.publisher.events_acked < count:  # noqa: ASYNC110 - a counter, no event
            await asyncio.sleep(0.05)

    async def drained(self) -> None:
        while self.appended < self.events or self.outbox.depth():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _edge(workdir: Path, mqtt_url: str, events: int, ahead: timedelta) -> AsyncIterator[Edge]:
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
            max_in_flight=4,
            resend_after_s=RESEND_S,
            resend_max_s=RESEND_MAX_S,
        )
        edge = Edge(outbox, publisher, events, ahead)
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


async def _ledger(database: str, result: FaultResult) -> None:
    conn = await asyncpg.connect(_pg_dsn(database), timeout=10)
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


async def _kill_pg_connections(database: str) -> int:
    conn = await asyncpg.connect(_pg_dsn("test"), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        return len(rows)
    finally:
        await conn.close()


async def _replay_quarantined(database: str) -> int:
    """Apply the quarantined events with the server's clock 2 h on (their time has come)."""
    # Imported here: the server stack is only needed by this scenario.
    from server.config import DatabaseSettings, ServerSettings
    from server.dead_letter_replay import OFFLINE, replay_dead_letters
    from server.ingest import Ingestor
    from server.metrics import Metrics
    from server.store import Store
    from stockgate.settings import load

    url = _pg_dsn(database).replace("postgresql://", "postgresql+asyncpg://")
    settings = load(
        ServerSettings,
        None,
        database={"url": url},
        api={"keys": [{"key": API_KEY, "role": "viewer"}]},
        read_points=[{"id": READ_POINT, "inbound_location": "wh1.receiving"}],
    )
    store = Store.open(DatabaseSettings(url=url))
    try:
        later = Ingestor(
            store, settings, OFFLINE, Metrics(), clock=lambda: now_utc() + 2 * CLOCK_AHEAD
        )
        replayed = 0
        while True:
            report = await replay_dead_letters(store, later)
            replayed += len(report.replayed)
            if not report.replayed:
                return replayed
    finally:
        await store.close()


async def run_scenario(scenario: str, workdir: Path, events: int) -> FaultResult:
    """Run one scenario of ``SCENARIOS`` with ``events`` events; its figures.

    Raises:
        FaultError: a process did not start or the stream did not drain in time.
        ValueError: an unknown scenario.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown fault scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    result = FaultResult(scenario, events)
    ahead = CLOCK_AHEAD if scenario == "clock_ahead" else timedelta(0)
    async with _database() as database:
        db_url = _pg_dsn(database).replace("postgresql://", "postgresql+asyncpg://")
        await asyncio.to_thread((workdir / "broker").mkdir, exist_ok=True)
        broker = Mosquitto(workdir / "broker")
        await asyncio.to_thread(broker.start)
        shared = scenario == "shared_sub_kill9"
        servers = [
            FaultServer(workdir, f"server-{n}", broker.url, db_url, shared=shared)
            for n in range(2 if shared else 1)
        ]
        try:
            for server in servers:
                await asyncio.to_thread(server.start)
            async with _edge(workdir, broker.url, events, ahead) as edge:
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await edge.acked_at_least(min(events // 3, events - 1))
                    resent_before = edge.publisher.batches_resent
                    fault_end = await _inject(scenario, servers, broker, database)
                    await edge.drained()
                result.recover_s = round(time.monotonic() - fault_end, 2)
                result.resends = edge.publisher.batches_resent - resent_before
                result.batches = edge.publisher.batches_sent
        finally:
            for server in servers:
                server.stop()
            broker.stop()
        if scenario == "clock_ahead":
            await _ledger(database, result)
            result.detail["applied_before_replay"] = result.applied
            result.detail["replayed"] = await _replay_quarantined(database)
        await _ledger(database, result)
    return result


async def _inject(
    scenario: str, servers: list[FaultServer], broker: Mosquitto, database: str
) -> float:
    """Break what ``scenario`` breaks; returns the monotonic time the fault ended."""
    if scenario == "server_kill9":
        servers[0].kill9()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(servers[0].start)
    elif scenario == "broker_restart":
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(broker.start)
    elif scenario == "broker_down":
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(broker.start)
    elif scenario == "pg_conn_killed":
        for _ in range(2):
            await _kill_pg_connections(database)
            await asyncio.sleep(0.5)
    elif scenario == "shared_sub_kill9":
        servers[1].kill9()
    # clock_ahead: the fault is in the events themselves.
    return time.monotonic()
