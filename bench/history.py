"""History figures: how fast the ledger followers turn ledger rows into rollups and points.

``history.follow_rows_per_s``: after the ``server.events_per_s`` run, on the ledger that run
wrote (same file, same machine, minutes later), both followers of the server start again
from the first row, concurrently, in one process, as a server runs them: the SQL rollups
(``server.history.rollups``, SQLite) and the InfluxDB sink (``server.history.influx``) writing
to a real VictoriaMetrics (``bench.victoria``). The clock runs until both have reached the
newest row; rows per second = ledger rows / that time. Its target is the ingest rate of the
same run (the follower keeps up when the ratio is at least 1). Afterwards the rollups are
checked with ``check-history`` and the points read back and counted.

``python -m bench --only history`` (``latency``): the p99 of the history endpoints
(``history.pages_p99_ms``, target 50 ms) and of the reports (``history.reports_p99_ms``,
target 2 s for whole-ledger reports) over a generated ledger of ``--ledger-rows`` rows
(``bench.ledger_gen``, as the api group), its rollups built by ``rebuild-history`` and a
standard cost recorded for every item, measured against the real server process as the api
group measures (``bench.api.measure``).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Final

import sqlalchemy as sa

from bench import ledger_gen
from bench.api import _check, measure, p99_figure
from bench.api_requests import FLOOR_KIND, HISTORY_KINDS, REPORT_KINDS
from bench.cpu import percentile
from bench.figures import Figure, Target
from bench.files import remove_database
from bench.server_proc import ServerProcess
from bench.victoria import VictoriaMetrics
from server.config.history import HistorySettings, InfluxSettings
from server.config.settings import DatabaseSettings
from server.history.check import history_report, rebuild_history, reset_rollups
from server.history.follow import LedgerFollower, last_ledger_id
from server.history.influx import INFLUXDB, MOVEMENT, InfluxSink
from server.history.queries import MovementHistoryQuery, movement_select, needs_items
from server.history.rollups import RollupSink
from server.store.database import Store
from server.store.schema.core import items
from server.store.schema.costs import item_costs
from server.store.schema.history import history_cursors, history_place_movements

FOLLOW_TIMEOUT_S: Final = 1800.0
PAGES_P99_MS: Final = 50.0
REPORTS_P99_MS: Final = 2000.0
REPORT_TIMEOUT_S: Final = 1800.0
REPORT_WORKERS: Final = HistorySettings().report_workers
"""The server runs with the default ``[history] report_workers``."""
REPORT_SAMPLE_SHARE: Final = 10
"""Reports are sent ``samples // REPORT_SAMPLE_SHARE`` times each (at least 3): each one
reads every book at one or two checkpoints."""
WARMUP_PER_KIND: Final = 2
BASELINE_SAMPLES: Final = 20
"""Per site-wide kind, the SQL of its requests timed on both movement rollups."""


async def _follow(database: Path, influx_url: str) -> tuple[int, float, float, list[str]]:
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{database}"))
    sink = InfluxSink(InfluxSettings(url=influx_url, org="bench", bucket="bench"))
    settings = HistorySettings()
    try:
        await reset_rollups(store)
        async with store.begin("resetting the sink position") as conn:
            await conn.execute(sa.delete(history_cursors).where(history_cursors.c.name == INFLUXDB))
        rows = await last_ledger_id(store)
        followers = [
            LedgerFollower(store, RollupSink(), settings, owner="bench"),
            LedgerFollower(store, sink, settings, owner="bench"),
        ]
        seconds: dict[str, float] = {}
        started = time.perf_counter()

        async def follow(follower: LedgerFollower) -> None:
            while await follower.step():
                pass
            seconds[follower.name] = time.perf_counter() - started

        async with asyncio.timeout(FOLLOW_TIMEOUT_S), asyncio.TaskGroup() as group:
            for follower in followers:
                group.create_task(follow(follower))
        elapsed = time.perf_counter() - started
        if any(follower.rows_followed != rows for follower in followers):
            raise RuntimeError(
                f"followers handed over {[f.rows_followed for f in followers]} of {rows} rows"
            )
        problems = (await history_report(store)).lines
        return rows, elapsed, seconds["rollups"], problems
    finally:
        await sink.close()
        await store.close()


def follow_rate(database: Path, workdir: Path, events_per_s: float, *, passes: int = 1) -> Figure:
    """``history.follow_rows_per_s`` over the ledger in ``database`` (a server run's): the
    median of ``passes``, each into a VictoriaMetrics of its own."""
    taken: list[tuple[float, int, float, float, int]] = []
    for number in range(passes):
        vm_dir = workdir / "victoria-metrics" / f"pass-{number}"
        vm_dir.mkdir(parents=True, exist_ok=True)
        with VictoriaMetrics(vm_dir) as victoria:
            rows, seconds, rollup_seconds, problems = asyncio.run(_follow(database, victoria.url))
            if problems:
                raise RuntimeError(f"rollups disagree with the ledger: {problems[:3]}")
            points = sum(
                len(series["values"])
                for series in victoria.export(f'{{__name__="{MOVEMENT}_ledger_id"}}')
            )
        taken.append((rows / seconds, rows, seconds, rollup_seconds, points))
    rate, rows, seconds, rollup_seconds, points = sorted(taken)[(passes - 1) // 2]
    return Figure(
        key="history.follow_rows_per_s",
        value=round(rate, 1),
        unit="rows/s",
        how=(
            f"The {rows:,} ledger rows of the server.events_per_s run, followed again from the "
            "first row by both followers at once in one process (SQL rollups on the same "
            "SQLite file; InfluxDB sink through influxdb-client's batching write API with gzip "
            "to a real VictoriaMetrics), [history] defaults; timed until both reached the "
            "newest row; then check-history and the points read back"
            + (f"; the median of {passes} passes" if passes > 1 else "")
            + ". Target: the ingest rate of the same run (ratio ≥ 1: the follower keeps up)."
        ),
        target=Target(">=", events_per_s),
        detail={
            "ledger_rows": rows,
            "seconds": round(seconds, 3),
            "rollups_alone_seconds": round(rollup_seconds, 3),
            "points_read_back": points,
            "server_events_per_s": events_per_s,
            "ratio_to_server_events_per_s": round(rate / events_per_s, 3),
            **({"passes": [round(each[0], 1) for each in taken]} if passes > 1 else {}),
        },
    )


async def _prepare(path: Path) -> tuple[float, int, int]:
    """Rollups by ``rebuild-history`` and a standard cost for every item; returns the
    rebuild's seconds and the rows of both movement rollups."""
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    try:
        # Costs first: the books kept at checkpoints are computed with the costs known
        # then (an item whose costs change later is replayed until the follower has
        # computed it again).
        async with store.begin("recording standard costs") as conn:
            ids = [int(row[0]) for row in await conn.execute(sa.select(items.c.id))]
            await conn.execute(
                sa.insert(item_costs),
                [
                    {
                        "item_id": item_id,
                        "site": None,
                        "unit_cost": Decimal(item_id % 97 + 1) / 4,
                        "effective_from": datetime(2000, 1, 1, tzinfo=UTC),
                        "actor": "bench",
                        "recorded_at": datetime.now(UTC),
                        "note": None,
                    }
                    for item_id in ids
                ],
            )
        started = time.perf_counter()
        await rebuild_history(store)
        seconds = time.perf_counter() - started
        async with store.read("counting rollup rows") as conn:
            fine = await conn.scalar(sa.text("SELECT COUNT(*) FROM history_movements"))
            coarse = await conn.scalar(
                sa.select(sa.func.count()).select_from(history_place_movements)
            )
        return seconds, int(fine or 0), int(coarse or 0)
    finally:
        await store.close()


def _history_query(params: dict[str, str | int]) -> MovementHistoryQuery:
    """The query a ``/history/movements`` request of ``bench.api_requests`` makes."""
    group_by = str(params.get("group_by", ""))
    return MovementHistoryQuery(
        period="day" if params.get("bucket") == "day" else "hour",
        since=datetime.fromisoformat(str(params["since"]).replace("Z", "+00:00")),
        until=datetime.fromisoformat(str(params["until"]).replace("Z", "+00:00")),
        group_by=tuple(name for name in group_by.split(",") if name),  # type: ignore[misc]
        sku=str(params["sku"]) if "sku" in params else None,
        location=str(params["location"]) if "location" in params else None,
        read_point=str(params["read_point"]) if "read_point" in params else None,
        kind=str(params["kind"]) if "kind" in params else None,
        side="in" if params.get("side") == "in" else "out" if "side" in params else None,
    )


async def _rollup_baseline(
    path: Path, generated: ledger_gen.Generated, seed: int, samples: int
) -> dict[str, dict[str, float]]:
    """For each site-wide history kind: the SQL of its requests timed on the rollup without
    the item (what the server reads) and on the rollup by item (what it read before), in the
    same process, interleaved; p50 of each and their ratio."""
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    rng = random.Random(seed)
    out: dict[str, dict[str, float]] = {}
    try:
        async with store.read("timing the movement rollups") as conn:
            for kind in HISTORY_KINDS:
                if kind.path != "/api/v1/history/movements":
                    continue
                query = _history_query(kind.query(rng, generated))
                if needs_items(query):
                    continue
                times: dict[bool, list[float]] = {False: [], True: []}
                for _ in range(samples):
                    query = _history_query(kind.query(rng, generated))
                    for by_item in (False, True):
                        started = time.perf_counter()
                        (await conn.execute(movement_select(query, by_item=by_item))).all()
                        times[by_item].append((time.perf_counter() - started) * 1000)
                place, item = percentile(times[False], 50), percentile(times[True], 50)
                out[kind.name] = {
                    "without_item_p50_ms": round(place, 2),
                    "by_item_p50_ms": round(item, 2),
                    "speedup": round(item / place, 2) if place > 0 else 0.0,
                }
    finally:
        await store.close()
    return out


def latency(
    mqtt_url: str,
    workdir: Path,
    ledger_rows: int,
    samples: int,
    *,
    seed: int = 7,
    warmup_per_kind: int = WARMUP_PER_KIND,
) -> list[Figure]:
    """``history.pages_p99_ms`` and ``history.reports_p99_ms`` over ``ledger_rows`` rows."""
    path = workdir / "history-ledger.db"
    remove_database(path)
    report_samples = max(3, samples // REPORT_SAMPLE_SHARE)
    try:
        generated = ledger_gen.generate(path, ledger_rows)
        problems, _ = asyncio.run(_check(path))
        if problems:
            raise RuntimeError(f"generated balances disagree with the ledger: {problems[:3]}")
        rebuild_seconds, fine_rows, coarse_rows = asyncio.run(_prepare(path))
        baseline = asyncio.run(_rollup_baseline(path, generated, seed, BASELINE_SAMPLES))
        size_mb = path.stat().st_size / (1024 * 1024)
        with ServerProcess(workdir, mqtt_url=mqtt_url, database=path, read_points=[]) as server:
            kinds = (*HISTORY_KINDS, *REPORT_KINDS, FLOOR_KIND)
            results = asyncio.run(
                measure(
                    server.base_url,
                    generated,
                    kinds,
                    samples,
                    seed,
                    warmup_per_kind,
                    timeout_s=REPORT_TIMEOUT_S,
                    samples_of={kind.key: report_samples for kind in REPORT_KINDS},
                )
            )
    finally:
        remove_database(path)
    floor_ms = results[FLOOR_KIND.key].latencies_ms
    data_text = (
        f"{generated.ledger_rows:,} generated ledger rows ({generated.units:,} units over two "
        f"years, {ledger_gen.SITES} sites, {generated.locations} locations, "
        f"{generated.items:,} items; SQLite file {size_mb:,.0f} MB), rollups built by "
        f"rebuild-history in {rebuild_seconds:,.0f} s ({fine_rows:,} rows by item, "
        f"{coarse_rows:,} without), a standard cost per item. `stockgate server` in its own "
        f"process ([history] report_workers = {REPORT_WORKERS}, the default: each report split "
        "by item between the API's process and the workers); httpx, one keep-alive "
        "connection, one request at a time; latency = request "
        f"sent to response body read; GET /healthz p50 {percentile(floor_ms, 50):.1f} ms"
    )
    common = {
        "ledger_rows": generated.ledger_rows,
        "database_mb": round(size_mb, 1),
        "rebuild_history_seconds": round(rebuild_seconds, 1),
        "rollup_rows_by_item": fine_rows,
        "rollup_rows_without_item": coarse_rows,
        "http_floor_healthz_p50_ms": round(percentile(floor_ms, 50), 2),
        "report_workers": REPORT_WORKERS,
    }
    return [
        p99_figure(
            "history.pages_p99_ms",
            results,
            HISTORY_KINDS,
            f"{data_text}. GET /api/v1/history/...",
            samples,
            PAGES_P99_MS,
            common,
            {"rollup_without_item_vs_by_item": baseline},
        ),
        p99_figure(
            "history.reports_p99_ms",
            results,
            REPORT_KINDS,
            "Same ledger and server. GET /api/v1/reports/...",
            report_samples,
            REPORTS_P99_MS,
            common,
        ),
    ]
