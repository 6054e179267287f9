"""History figures: how fast the ledger followers turn ledger rows into rollups and points.

``history.follow_rows_per_s``: after the ``server.events_per_s`` run, on the ledger that run
wrote (same file, same machine, minutes later), both followers of the server start again
from the first row, concurrently, in one process, as a server runs them: the SQL rollups
(``server.history_rollups``, SQLite) and the InfluxDB sink (``server.history_influx``) writing
to a real VictoriaMetrics (``bench.victoria``). The clock runs until both have reached the
newest row; rows per second = ledger rows / that time. Its target is the ingest rate of the
same run (the follower keeps up when the ratio is at least 1). Afterwards the rollups are
checked with ``check-history`` and the points read back and counted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Final

import sqlalchemy as sa

from bench.figures import Figure, Target
from bench.victoria import VictoriaMetrics
from server.config import DatabaseSettings
from server.history_check import history_report, reset_rollups
from server.history_follow import LedgerFollower, last_ledger_id
from server.history_influx import INFLUXDB, MOVEMENT, InfluxSink
from server.history_rollups import RollupSink
from server.history_settings import HistorySettings, InfluxSettings
from server.schema_history import history_cursors
from server.store import Store

FOLLOW_TIMEOUT_S: Final = 1800.0


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


def follow_rate(database: Path, workdir: Path, events_per_s: float) -> Figure:
    """``history.follow_rows_per_s`` over the ledger in ``database`` (a server run's)."""
    vm_dir = workdir / "victoria-metrics"
    vm_dir.mkdir(parents=True, exist_ok=True)
    with VictoriaMetrics(vm_dir) as victoria:
        rows, seconds, rollup_seconds, problems = asyncio.run(_follow(database, victoria.url))
        if problems:
            raise RuntimeError(f"rollups disagree with the ledger: {problems[:3]}")
        points = sum(
            len(series["values"])
            for series in victoria.export(f'{{__name__="{MOVEMENT}_ledger_id"}}')
        )
    rate = rows / seconds
    return Figure(
        key="history.follow_rows_per_s",
        value=round(rate, 1),
        unit="rows/s",
        how=(
            f"The {rows:,} ledger rows of the server.events_per_s run, followed again from the "
            "first row by both followers at once in one process (SQL rollups on the same "
            "SQLite file; InfluxDB sink through influxdb-client's batching write API with gzip "
            "to a real VictoriaMetrics), [history] defaults; timed until both reached the "
            "newest row; then check-history and the points read back. Target: the ingest "
            "rate of the same run (ratio ≥ 1: the follower keeps up)."
        ),
        target=Target(">=", events_per_s),
        detail={
            "ledger_rows": rows,
            "seconds": round(seconds, 3),
            "rollups_alone_seconds": round(rollup_seconds, 3),
            "points_read_back": points,
            "server_events_per_s": events_per_s,
            "ratio_to_server_events_per_s": round(rate / events_per_s, 3),
        },
    )
