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
flight in it is gone), ``broker_down`` (the broker away for ``OUTAGE_S``, ten minutes of
wall-clock time, while the door keeps reading: two thirds of the events are made during
the outage, at a steady pace, and wait in the outbox; the edge runs its shipped re-send
and reconnect timers, and the figure counts its re-sends and connection attempts),
``server_disk_full`` (the server on SQLite, its database on a small tmpfs that a ballast
file fills mid-stream: writes fail with a real ENOSPC; the server must say so on
``/healthz``, stay up and ack nothing it did not commit; the ballast is then deleted),
``pg_conn_killed``
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
import sqlite3
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
from edge.config import BufferSettings
from edge.publisher import Publisher
from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from wire.models import Event, now_utc

REPO: Final = Path(__file__).resolve().parent.parent
SCENARIOS: Final = (
    "server_kill9",
    "broker_restart",
    "broker_down",
    "server_disk_full",
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
OUTAGE_S: Final = 600.0
"""The broker outage of ``broker_down``: ten minutes, on the wall clock (the edge's timers
are real; only the reads are simulated)."""
OUTAGE_EDGE: Final = BufferSettings()
"""``broker_down`` runs the edge's shipped timers: re-send after 10 s doubling to 300 s,
8 batches in flight, drain at 2,000 events/s."""
DISK_MB: Final = 32
"""Size of the tmpfs under the server's database in ``server_disk_full``."""
HEADROOM_BYTES: Final = 512 * 1024
"""Free space the ballast leaves: the ingest fills it within a few batches."""
FULL_WAIT_S: Final = 60.0
FULL_HOLD_S: Final = 5.0
"""How long the disk stays full once the server has reported it (the edge keeps sending)."""
CHUNK: Final = 50
CHUNK_PAUSE_S: Final = 0.02
CLOCK_AHEAD: Final = timedelta(hours=1)


HOW: Final = {
    "server_kill9": "SIGKILL of the server while it applies a third of the stream; restarted "
    "1 s later; the edge re-sends what was not acked.",
    "broker_restart": "Mosquitto without persistence stopped and started at once mid-stream "
    "(everything in flight in it lost).",
    "broker_down": f"Mosquitto away for {OUTAGE_S / 60:g} min (wall clock) mid-stream while "
    "two thirds of the events are read at a steady pace; the edge at its shipped timers "
    "(re-send 10 s doubling to 300 s); re-sends and connection attempts counted.",
    "server_disk_full": f"The server's SQLite database on a {DISK_MB} MB tmpfs filled by a "
    "ballast file mid-stream (real ENOSPC); the server must report it on /healthz and ack "
    "nothing uncommitted; the ballast is then deleted.",
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
        first = self.events if self.spread_s is None else _first_part(self.events)
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


def _first_part(events: int) -> int:
    """Events acknowledged before the fault is injected."""
    return min(events // 3, events - 1)


@contextlib.asynccontextmanager
async def _edge(
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
    from plumbing.settings import load
    from server.config import DatabaseSettings, ServerSettings
    from server.dead_letter_replay import OFFLINE, replay_dead_letters
    from server.ingest import Ingestor
    from server.metrics import Metrics
    from server.store import Store

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


async def run_scenario(
    scenario: str, workdir: Path, events: int, *, outage_s: float = OUTAGE_S
) -> FaultResult:
    """Run one scenario of ``SCENARIOS`` with ``events`` events; its figures.

    ``outage_s`` is how long ``broker_down`` keeps the broker away.

    Raises:
        FaultError: a process did not start, the stream did not drain in time, or (for
            ``server_disk_full``) the small filesystem could not be mounted.
        ValueError: an unknown scenario.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown fault scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    if scenario == "server_disk_full":
        return await _run_disk_full(workdir, events)
    result = FaultResult(scenario, events)
    ahead = CLOCK_AHEAD if scenario == "clock_ahead" else timedelta(0)
    outage = scenario == "broker_down"
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
            async with _edge(
                workdir,
                broker.url,
                events,
                ahead,
                spread_s=outage_s if outage else None,
                shipped_timers=outage,
            ) as edge:
                async with asyncio.timeout(DRAIN_TIMEOUT_S + (outage_s if outage else 0)):
                    await edge.acked_at_least(_first_part(events))
                    resent_before = edge.publisher.batches_resent
                    fault_end = await _inject(scenario, servers, broker, database, edge, result)
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
    scenario: str,
    servers: list[FaultServer],
    broker: Mosquitto,
    database: str,
    edge: Edge,
    result: FaultResult,
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
        return await _broker_outage(broker, edge, result)
    elif scenario == "pg_conn_killed":
        for _ in range(2):
            await _kill_pg_connections(database)
            await asyncio.sleep(0.5)
    elif scenario == "shared_sub_kill9":
        servers[1].kill9()
    # clock_ahead: the fault is in the events themselves.
    return time.monotonic()


async def _broker_outage(broker: Mosquitto, edge: Edge, result: FaultResult) -> float:
    """The broker away for the edge's ``spread_s`` while the door reads the rest; returns
    the monotonic time it was back (recovery counts the edge's reconnect)."""
    publisher, client = edge.publisher, edge.client
    outage_s = edge.spread_s or 0.0
    await asyncio.to_thread(broker.stop)
    began = time.monotonic()
    sent, resent, rounds = publisher.batches_sent, publisher.batches_resent, publisher.rounds
    attempts, depth_before = client.failed_connects, edge.outbox.depth()
    edge.fault_started.set()
    await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - began)))
    while edge.appended < edge.events:  # noqa: ASYNC110 - the feed may run a little late
        await asyncio.sleep(0.01)
    result.detail.update(
        outage_s=round(time.monotonic() - began, 1),
        read_during_outage=edge.appended - _first_part(edge.events),
        outbox_depth_at_return=edge.outbox.depth(),
        outbox_depth_at_outage=depth_before,
        batches_sent_during_outage=publisher.batches_sent - sent,
        resends_during_outage=publisher.batches_resent - resent,
        send_loop_rounds_during_outage=publisher.rounds - rounds,
        failed_connects_during_outage=client.failed_connects - attempts,
    )
    await asyncio.to_thread(broker.start)
    back = time.monotonic()
    await edge.client.wait_connected(DRAIN_TIMEOUT_S)
    result.detail["edge_reconnect_s"] = round(time.monotonic() - back, 2)
    return back


def _mount_tmpfs(path: Path, size_mb: int) -> None:
    """A tmpfs of ``size_mb`` at ``path`` (needs CAP_SYS_ADMIN: root on a normal host)."""
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "stockgate-fault", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise FaultError(
            f"server_disk_full mounts a {size_mb} MB tmpfs at {path} and could not "
            f"(root with CAP_SYS_ADMIN is needed): {done.stderr.strip() or done.returncode}"
        )


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)


def _fill(path: Path, ballast: Path, headroom: int) -> int:
    """Fill the filesystem of ``path`` with ``ballast`` until ``headroom`` bytes are free."""
    stat = os.statvfs(path)
    size = max(0, stat.f_bavail * stat.f_frsize - headroom)
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    return size


async def _health(server: FaultServer) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/healthz")
    return response.status_code, response.json()


async def _until_reported_full(server: FaultServer) -> dict[str, object]:
    async with asyncio.timeout(FULL_WAIT_S):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                status, health = await _health(server)
                if status == 503 and health.get("database_full_since"):
                    return health
            await asyncio.sleep(0.1)


async def _run_disk_full(workdir: Path, events: int) -> FaultResult:
    result = FaultResult("server_disk_full", events)
    disk = workdir / "db-disk"
    await asyncio.to_thread(disk.mkdir, exist_ok=True)
    await asyncio.to_thread(_mount_tmpfs, disk, DISK_MB)
    database = disk / "server.db"
    try:
        await asyncio.to_thread((workdir / "broker").mkdir, exist_ok=True)
        broker = Mosquitto(workdir / "broker")
        await asyncio.to_thread(broker.start)
        server = FaultServer(
            workdir, "server-0", broker.url, f"sqlite+aiosqlite:///{database}", shared=False
        )
        try:
            await asyncio.to_thread(server.start)
            async with _edge(workdir, broker.url, events, timedelta(0)) as edge:
                async with asyncio.timeout(DRAIN_TIMEOUT_S + FULL_WAIT_S):
                    await edge.acked_at_least(_first_part(events))
                    resent_before = edge.publisher.batches_resent
                    ballast = disk / "ballast"
                    filled = await asyncio.to_thread(_fill, disk, ballast, HEADROOM_BYTES)
                    filled_at = time.monotonic()
                    health = await _until_reported_full(server)
                    reported_at = time.monotonic()
                    acked_at_report = edge.publisher.events_acked
                    await asyncio.sleep(FULL_HOLD_S)
                    result.detail.update(
                        ballast_mb=round(filled / 2**20, 1),
                        reported_full_after_s=round(reported_at - filled_at, 2),
                        acked_at_report=acked_at_report,
                        acked_while_reported_full=edge.publisher.events_acked - acked_at_report,
                        health_while_full=health,
                        server_up_while_full=server.running,
                    )
                    await asyncio.to_thread(ballast.unlink)
                    fault_end = time.monotonic()
                    await edge.drained()
                result.recover_s = round(time.monotonic() - fault_end, 2)
                result.resends = edge.publisher.batches_resent - resent_before
                result.batches = edge.publisher.batches_sent
            status, health = await _health(server)
            result.detail["health_after"] = {"status": status, **health}
        finally:
            server.stop()
            broker.stop()
        await asyncio.to_thread(_sqlite_ledger, database, result)
        log_lines = server.log.read_text(errors="replace").splitlines()
        result.detail["log_lines_database_full"] = sum(
            "database full: writes refused" in line for line in log_lines
        )
        result.detail["log_lines_writable_again"] = sum(
            "database writable again" in line for line in log_lines
        )
    finally:
        await asyncio.to_thread(_unmount, disk)
    return result


def _sqlite_ledger(database: Path, result: FaultResult) -> None:
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
