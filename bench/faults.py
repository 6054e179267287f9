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

This module holds the scenarios: how each breaks the system (``HOW``) and
``run_scenario``. The processes, the edge path and the ledger count they share are
``bench.fault_harness``. ``python -m bench --only faults`` records the figures;
``tests/e2e/test_fault_matrix.py`` runs each scenario at a smaller size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Final

import asyncpg
import httpx

from bench.broker import Mosquitto
from bench.fault_harness import (
    API_KEY,
    DRAIN_TIMEOUT_S,
    READ_POINT,
    Edge,
    FaultError,
    FaultResult,
    FaultServer,
    count_ledger,
    count_sqlite_ledger,
    first_part,
    fresh_database,
    open_edge,
    pg_dsn,
)
from wire.models import now_utc

SCENARIOS: Final = (
    "server_kill9",
    "broker_restart",
    "broker_down",
    "server_disk_full",
    "pg_conn_killed",
    "shared_sub_kill9",
    "clock_ahead",
)
OUTAGE_S: Final = 600.0
"""The broker outage of ``broker_down``: ten minutes, on the wall clock (the edge's timers
are real; only the reads are simulated)."""
DISK_MB: Final = 32
"""Size of the tmpfs under the server's database in ``server_disk_full``."""
HEADROOM_BYTES: Final = 512 * 1024
"""Free space the ballast leaves: the ingest fills it within a few batches."""
FULL_WAIT_S: Final = 60.0
FULL_HOLD_S: Final = 5.0
"""How long the disk stays full once the server has reported it (the edge keeps sending)."""
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


async def _kill_pg_connections(database: str) -> int:
    conn = await asyncpg.connect(pg_dsn("test"), timeout=10)
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
    from server.config.settings import DatabaseSettings, ServerSettings
    from server.ingest.consumer import Ingestor
    from server.ingest.dead_letter_replay import OFFLINE, replay_dead_letters
    from server.metrics import Metrics
    from server.store.database import Store

    url = pg_dsn(database).replace("postgresql://", "postgresql+asyncpg://")
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
    async with fresh_database() as database:
        db_url = pg_dsn(database).replace("postgresql://", "postgresql+asyncpg://")
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
            async with open_edge(
                workdir,
                broker.url,
                events,
                ahead,
                spread_s=outage_s if outage else None,
                shipped_timers=outage,
            ) as edge:
                async with asyncio.timeout(DRAIN_TIMEOUT_S + (outage_s if outage else 0)):
                    await edge.acked_at_least(first_part(events))
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
            await count_ledger(database, result)
            result.detail["applied_before_replay"] = result.applied
            result.detail["replayed"] = await _replay_quarantined(database)
        await count_ledger(database, result)
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
        read_during_outage=edge.appended - first_part(edge.events),
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
            async with open_edge(workdir, broker.url, events, timedelta(0)) as edge:
                async with asyncio.timeout(DRAIN_TIMEOUT_S + FULL_WAIT_S):
                    await edge.acked_at_least(first_part(events))
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
        await asyncio.to_thread(count_sqlite_ledger, database, result)
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
