"""Server figures: events per second from MQTT to committed ledger and Ack.

``server.events_per_s``: a real Mosquitto, the server as its own process (``stockgate
server``, SQLite file), and edge-like publishers in this process: ``GATEWAYS`` gateways,
each with its own MQTT connection (``plumbing.mqtt.MqttClient``), publishing pre-built
EventBatch payloads of ``BATCH_EVENTS`` events (``bench.server_workload``) with QoS 1 on its
events topic and keeping at most ``WINDOW`` batches unacknowledged (the edge's
``max_in_flight`` default), exactly as the edge publisher does. The clock runs from the
first publish to the last Ack. A warm-up (untimed) creates the items and locations first.
Afterwards the ledger, the seen event ids and the balances are checked against what was
sent. ``server.pg_events_per_s`` and ``server.pg_{n}_instances_events_per_s`` run the same
on PostgreSQL. The broker alone is ``bench.broker_ceiling``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from bench.cpu import machine_cpu_seconds, process_tree_cpu_seconds, run_queue_seconds
from bench.figures import Figure, Target
from bench.files import remove_database
from bench.profiling import write_text
from bench.server_proc import ServerProcess
from bench.server_workload import (
    WARMUP_BATCHES,
    WINDOW,
    Batch,
    build_batches,
    read_points,
    workload_how,
)
from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from server.config.settings import DatabaseSettings
from server.store.check import check_ledger
from server.store.database import Store
from wire import topics
from wire.models import Ack

EVENTS_TARGET: Final = 20_000.0
ACK_TIMEOUT_S: Final = 300.0
DATABASE_NAME: Final = "server-events.db"
"""The run's SQLite file in the work directory (``bench.history`` follows its ledger)."""
CATCH_UP_TIMEOUT_S: Final = 600.0


@dataclass(slots=True)
class _Run:
    first_publish: float = 0.0
    last_ack: float = 0.0
    acked: int = 0


async def _publish_gateway(
    settings: MqttSettings, batches: list[Batch], run: _Run, *, timed: bool
) -> None:
    """One edge's publisher: a window of ``WINDOW`` unacknowledged batches, Acks free it."""
    if not batches:
        return
    gateway = batches[0].gateway
    window = asyncio.Semaphore(WINDOW)
    outstanding = {batch.batch_id for batch in batches}
    async with MqttClient(settings, f"bench-{gateway}") as client:
        await client.wait_connected(timeout=10)
        await client.subscribe(topics.ack(batches[0].site, gateway), qos=1)

        async def receive() -> None:
            async for message in client.messages():
                ack = Ack.model_validate_json(message.payload)
                for acked in ack.batches:
                    if acked.batch_id in outstanding:
                        outstanding.discard(acked.batch_id)
                        run.acked += 1
                        run.last_ack = time.perf_counter()
                        window.release()
                if not outstanding:
                    return

        async with asyncio.timeout(ACK_TIMEOUT_S), asyncio.TaskGroup() as tasks:
            tasks.create_task(receive(), name=f"acks-{gateway}")
            for batch in batches:
                await window.acquire()
                if timed and not run.first_publish:
                    run.first_publish = time.perf_counter()
                await client.publish(batch.topic, batch.payload, qos=1)


async def _publish_all(mqtt_url: str, batches: list[list[Batch]], *, timed: bool) -> _Run:
    settings = MqttSettings(url=mqtt_url)
    run = _Run()
    async with asyncio.TaskGroup() as tasks:
        for mine in batches:
            tasks.create_task(_publish_gateway(settings, mine, run, timed=timed))
    return run


async def _verify(url: str, sent_events: int) -> None:
    """The ledger holds one row and one seen id per sent event, and balances agree with it."""
    store = Store.open(DatabaseSettings(url=url))
    try:
        async with store.read("counting the benchmark's rows") as conn:
            ledger_rows = (await conn.execute(sa.text("SELECT COUNT(*) FROM ledger"))).scalar_one()
            seen = (await conn.execute(sa.text("SELECT COUNT(*) FROM seen_events"))).scalar_one()
        problems = await check_ledger(store)
    finally:
        await store.close()
    if ledger_rows != sent_events or seen != ledger_rows:
        raise RuntimeError(
            f"ledger holds {ledger_rows} rows and {seen} event ids; {sent_events} events were sent"
        )
    if problems:
        raise RuntimeError(f"balances disagree with the ledger: {problems[:3]}")


@dataclass(frozen=True, slots=True)
class _Measured:
    """One timed ingest run: what was sent, how long it took, what the servers used."""

    timed: list[Batch]
    sent_events: int
    seconds: float
    cpu: list[dict[str, float]]
    """Per server process (``_cpu_use``)."""
    waits: dict[str, object]
    plans: list[dict[str, int]]
    """Per server process: its groups by where their plan was made
    (``stockgate_ingest_plans_total``: ahead and kept, replanned, in the transaction)."""
    stages: list[dict[str, float]]
    """Per server process: the share of the timed part each ingest stage was in progress
    (``stockgate_ingest_stage_seconds_total``: check, plan, write)."""
    running: dict[str, float]
    """What ``while_running`` measured after the timed part, the servers still up."""
    machine: dict[str, float]
    """The whole machine over the timed part (``_machine_use``)."""


WaitSampler = Callable[[], AbstractContextManager[dict[str, object]]]
"""Samples what the database's sessions wait on while the timed part runs (PostgreSQL)."""


def _no_waits() -> AbstractContextManager[dict[str, object]]:
    return nullcontext({})


def _timed_ingest(
    mqtt_url: str,
    workdir: Path,
    all_batches: list[list[Batch]],
    warmup_batches: int,
    database: Path | str,
    *,
    instances: int = 1,
    profile_to: Path | None = None,
    sample_waits: WaitSampler = _no_waits,
    while_running: Callable[[], dict[str, float]] | None = None,
    sites: int = 1,
) -> _Measured:
    """Start ``instances`` servers on ``database``, warm up, then time the rest; then call
    ``while_running`` (if given) before the servers stop."""
    warmup = [mine[:warmup_batches] for mine in all_batches]
    timed = [mine[warmup_batches:] for mine in all_batches]
    with ExitStack() as stack:
        processes = [
            stack.enter_context(
                ServerProcess(
                    workdir,
                    mqtt_url=mqtt_url,
                    database=database,
                    read_points=read_points(sites),
                    profile_to=profile_to,
                    name="server" if instances == 1 else f"server-{number}",
                    shared_subscription=instances > 1,
                )
            )
            for number in range(1, instances + 1)
        ]
        asyncio.run(_publish_all(mqtt_url, warmup, timed=False))
        pids = [process.pid for process in processes if process.pid is not None]
        stages_before = [_stage_seconds(process.base_url) for process in processes]
        before = [process_tree_cpu_seconds(pid) for pid in pids]
        queued = [run_queue_seconds(pid) for pid in pids]
        machine_before = machine_cpu_seconds(MACHINE_PROCESSES)
        wall_before = time.perf_counter()
        with sample_waits() as waits:
            run = asyncio.run(_publish_all(mqtt_url, timed, timed=True))
        wall = time.perf_counter() - wall_before
        machine = _machine_use(machine_before, machine_cpu_seconds(MACHINE_PROCESSES), wall)
        cpu = [
            {
                **_cpu_use(pid, cpu_before, wall),
                "event_loop_waiting_for_cpu_cores": round(
                    (run_queue_seconds(pid) - queued_before) / wall, 3
                ),
            }
            for pid, cpu_before, queued_before in zip(pids, before, queued, strict=True)
        ]
        plans = [
            {key: int(value) for key, value in _counter(process.base_url, PLANS, "outcome").items()}
            for process in processes
        ]
        stages = [
            {
                stage: round((seconds - earlier.get(stage, 0.0)) / wall, 3)
                for stage, seconds in _stage_seconds(process.base_url).items()
            }
            for process, earlier in zip(processes, stages_before, strict=True)
        ]
        running = while_running() if while_running is not None else {}
    flat = [batch for mine in timed for batch in mine]
    if run.acked != len(flat):
        raise RuntimeError(f"{run.acked} Acks for {len(flat)} batches")
    return _Measured(
        timed=flat,
        sent_events=sum(batch.events for mine in all_batches for batch in mine),
        seconds=run.last_ack - run.first_publish,
        cpu=cpu,
        waits=waits,
        plans=plans,
        stages=stages,
        running=running,
        machine=machine,
    )


MACHINE_PROCESSES: Final = ("postgres", "mosquitto")
"""Processes whose CPU use over the timed part is recorded by name (``_machine_use``)."""


def _machine_use(
    before: dict[str, float], after: dict[str, float], wall_s: float
) -> dict[str, float]:
    """What the whole machine did over the timed part, in cores: ``cores`` it has,
    ``busy_cores`` used by anything, and by ``MACHINE_PROCESSES`` (PostgreSQL's backends
    and Mosquitto). With the servers' own (``_cpu_use``) and their event loop's wait for a
    CPU (``event_loop_waiting_for_cpu_cores``), it shows whether ingest waited for the
    database or for the machine."""
    use: dict[str, float] = {"cores": float(os.cpu_count() or 0)}
    for name in ("busy", *MACHINE_PROCESSES):
        if name in before and name in after:
            use[f"{name}_cores"] = round((after[name] - before[name]) / wall_s, 3)
    return use


PLANS: Final = "stockgate_ingest_plans"
STAGES: Final = "stockgate_ingest_stage_seconds"


def _counter(base_url: str, family_name: str, label: str) -> dict[str, float]:
    """A server's counter ``family_name`` (total since start) by the value of ``label``."""
    text = httpx.get(f"{base_url}/metrics", timeout=10.0).text
    return {
        sample.labels[label]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == family_name
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def _stage_seconds(base_url: str) -> dict[str, float]:
    return _counter(base_url, STAGES, "stage")


def _workload_detail(measured: _Measured) -> dict[str, object]:
    flat = measured.timed
    return {
        "events": sum(batch.events for batch in flat),
        "batches": len(flat),
        "seconds": round(measured.seconds, 3),
        "receipts": sum(b.receipts for b in flat),
        "shipments": sum(b.shipments for b in flat),
        "ledger_rows_after": measured.sent_events,
        "payload_bytes_mean": round(sum(len(b.payload) for b in flat) / len(flat)),
        "machine": measured.machine,
    }


def server_events(
    mqtt_url: str,
    workdir: Path,
    batches_per_gateway: int,
    profile_to: Path | None = None,
    *,
    warmup_batches: int = WARMUP_BATCHES,
) -> tuple[Figure, list[bytes]]:
    """``server.events_per_s``; also returns the timed payloads for the broker ceiling."""
    all_batches = build_batches(warmup_batches + batches_per_gateway)
    database = workdir / DATABASE_NAME
    remove_database(database)
    measured = _timed_ingest(
        mqtt_url,
        workdir,
        all_batches,
        warmup_batches,
        database,
        profile_to=profile_to,
        while_running=lambda: _history_lag(database),
    )
    asyncio.run(_verify(f"sqlite+aiosqlite:///{database}", measured.sent_events))
    detail = _workload_detail(measured)
    figure = Figure(
        key="server.events_per_s",
        value=round(int(str(detail["events"])) / measured.seconds, 1),
        unit="events/s",
        how=(
            f"{workload_how(len(measured.timed))} (its own process, SQLite file in WAL mode "
            "with synchronous=FULL); timed from the first publish to the last Ack, after an "
            "untimed warm-up; then the ledger rows, seen event ids and balances (check-ledger) "
            "were verified. The server's CPU use over the timed part, from /proc, is in the "
            "details (cores: its event loop thread, its other threads, and the processes it "
            "started, where its SQLite write connection runs; its event loop's wait for a CPU, "
            "from schedstat; the whole machine's under machine), with the share of the timed "
            "part each ingest stage was in progress (stage_busy_share, from "
            "stockgate_ingest_stage_seconds_total)."
        ),
        target=Target(">=", EVENTS_TARGET),
        detail={
            **detail,
            "profile": str(profile_to) if profile_to is not None else None,
            **measured.cpu[0],
            "plans": measured.plans[0],
            "stage_busy_share": measured.stages[0],
            **measured.running,
        },
    )
    return figure, [batch.payload for batch in measured.timed]


def pg_server_events(
    mqtt_url: str,
    workdir: Path,
    batches_per_gateway: int,
    database_url: str,
    *,
    instances: int = 1,
    warmup_batches: int = WARMUP_BATCHES,
    sample_waits: WaitSampler = _no_waits,
    sites: int = 1,
) -> Figure:
    """``server.pg_events_per_s`` (one instance) or ``server.pg_{n}_instances_events_per_s``.

    Args:
        database_url: an empty PostgreSQL database (``postgresql+asyncpg://...``); the
            servers migrate it.
        instances: server processes on a shared subscription (``$share/...``).
        sample_waits: records what the database's sessions waited on meanwhile.
        sites: the gateways spread over this many sites (``SITES``), each with its own
            balance rows: what instances share then is no row at all.
    """
    all_batches = build_batches(warmup_batches + batches_per_gateway, sites=sites)
    measured = _timed_ingest(
        mqtt_url,
        workdir,
        all_batches,
        warmup_batches,
        database_url,
        instances=instances,
        sample_waits=sample_waits,
        sites=sites,
    )
    asyncio.run(_verify(database_url, measured.sent_events))
    detail = _workload_detail(measured)
    key = (
        "server.pg_events_per_s"
        if instances == 1
        else f"server.pg_{instances}_instances_events_per_s"
    )
    shared = (
        f"{instances} server processes with their own MQTT sessions on a shared subscription "
        "($share/...), one PostgreSQL database"
        if instances > 1
        else "one server process"
    )
    return Figure(
        key=key,
        value=round(int(str(detail["events"])) / measured.seconds, 1),
        unit="events/s",
        how=(
            f"{workload_how(len(measured.timed))}: {shared} on the machine's PostgreSQL "
            "(synchronous_commit on); timed from the first publish to the last Ack, after an "
            "untimed warm-up; then the ledger rows, seen event ids and balances (check-ledger) "
            "were verified. Each server process's CPU use (cores, from /proc) and its event "
            "loop's wait for a CPU (schedstat), the machine's (busy_cores, postgres_cores, "
            "mosquitto_cores under machine), the share of "
            "the timed part each of its ingest stages was in progress (stage_busy_share; write "
            "is summed over its writers) and what the database sessions waited on "
            "(pg_stat_activity sampled while timed) are in the details."
        ),
        detail={
            **detail,
            "instances": instances,
            "sites": sites,
            "server_cpu_cores": [cpu["server_cpu_cores"] for cpu in measured.cpu],
            "event_loop_thread_cores": [cpu["event_loop_thread_cores"] for cpu in measured.cpu],
            "event_loop_waiting_for_cpu_cores": [
                cpu["event_loop_waiting_for_cpu_cores"] for cpu in measured.cpu
            ],
            "plans": measured.plans,
            "stage_busy_share": measured.stages,
            "waits": measured.waits,
        },
    )


def _count(database: Path, sql: str) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0])


def _history_lag(database: Path) -> dict[str, float]:
    """How far the server's own rollups follower was behind at the last Ack, and how long
    it then took to reach the newest ledger row (it ran through the timed part)."""
    newest = _count(database, "SELECT COALESCE(MAX(id), 0) FROM ledger")
    position_sql = "SELECT COALESCE(MAX(position), 0) FROM history_cursors WHERE name = 'rollups'"
    behind = newest - _count(database, position_sql)
    started = time.perf_counter()
    while _count(database, position_sql) < newest:
        if time.perf_counter() - started > CATCH_UP_TIMEOUT_S:
            raise RuntimeError("the server's history follower did not catch up with the ledger")
        time.sleep(0.05)
    return {
        "history_rows_behind_at_last_ack": behind,
        "history_caught_up_s_after_last_ack": round(time.perf_counter() - started, 3),
    }


def _cpu_use(pid: int, before: dict[tuple[int, int], float], wall_s: float) -> dict[str, float]:
    """The server's CPU use over the timed part, in cores (1.0: one core busy).

    ``event_loop_thread_cores`` is its main thread (MQTT, validation, rules, SQLAlchemy);
    ``other_threads_cores`` the rest of its process, mostly aiosqlite's threads inside
    SQLite (reads); ``child_processes_cores`` the processes it started (on a SQLite file
    the write connection's SQLite, ``server.store.sqlite_process``). ``server_cpu_cores``
    is their sum.
    """
    after = process_tree_cpu_seconds(pid)
    used = {key: seconds - before.get(key, 0.0) for key, seconds in after.items()}
    total = sum(used.values())
    main = used.get((pid, pid), 0.0)
    children = sum(seconds for (process, _), seconds in used.items() if process != pid)
    return {
        "server_cpu_cores": round(total / wall_s, 3),
        "event_loop_thread_cores": round(main / wall_s, 3),
        "other_threads_cores": round((total - main - children) / wall_s, 3),
        "child_processes_cores": round(children / wall_s, 3),
    }


class ProfileError(RuntimeError):
    """The profiling pass produced no statistics."""


def profile(mqtt_url: str, workdir: Path, batches_per_gateway: int, out: Path) -> Path:
    """Run the server benchmark again (untimed) with the server under cProfile."""
    stats = workdir / "server-events.pstats"
    stats.unlink(missing_ok=True)
    figure, _ = server_events(mqtt_url, workdir, batches_per_gateway, profile_to=stats)
    if not stats.exists():
        log = workdir / "server.log"
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
        raise ProfileError(
            f"the profiled server wrote no statistics to {stats}; its log ends:\n{tail}"
        )
    return write_text(
        stats,
        out,
        "stockgate server: MQTT batches to ledger and Ack",
        f"The server.events_per_s workload ({figure.detail.get('events')} events) with the "
        f"server process under cProfile ({figure.value:,.0f} events/s with the profiler on). "
        "The whole process is included (start-up, warm-up, the API idle); look at "
        "server.ingest.consumer and below. Main thread only: SQLite statements execute on "
        "aiosqlite's "
        "thread, whose waits show up as the event loop's select/poll time.",
    )
