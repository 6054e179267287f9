"""Smoke tests of the server and broker benchmarks on a tiny size (real Mosquitto, real
server process); they check the figures come out positive, not how large they are."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bench import history, pg_floor, pg_waits, server, sqlite_floor
from bench.broker import Mosquitto, wait_listening
from bench.broker_ceiling import broker_raw
from bench.figures import Figure
from bench.groups import _in_turns
from bench.server_stages import stage_costs
from bench.server_workload import (
    BATCH_EVENTS,
    GATEWAYS,
    SHIP_LAG_BATCHES,
    build_batches,
    gateway_name,
    read_points,
)
from wire.models import EventBatch

pytestmark = pytest.mark.broker


def test_batches_are_valid_event_batches() -> None:
    batches = build_batches(SHIP_LAG_BATCHES + 1, gateways=2)
    assert len(batches) == 2
    for mine in batches:
        parsed = [EventBatch.model_validate_json(batch.payload) for batch in mine]
        assert all(len(batch.events) == BATCH_EVENTS for batch in parsed)
        assert parsed[0].seq_first == 1
        assert parsed[1].seq_first == parsed[0].seq_last + 1
        assert mine[-1].shipments > 0
        shipped = {e.epc for e in parsed[-1].events if e.direction == "out"}
        received = {e.epc for batch in parsed[:-1] for e in batch.events if e.direction == "in"}
        assert shipped <= received


def test_a_workload_over_two_sites_keeps_each_gateway_on_its_own_site() -> None:
    batches = build_batches(1, gateways=4, sites=2)
    points = {point["id"]: point for point in read_points(2)}
    sites = []
    for mine in batches:
        parsed = EventBatch.model_validate_json(mine[0].payload)
        sites.append(parsed.site)
        assert mine[0].site == parsed.site
        assert mine[0].topic == f"stockgate/v1/{parsed.site}/{parsed.gateway}/events"
        assert {points[e.read_point]["site"] for e in parsed.events} == {parsed.site}
    assert sites == ["wh1", "wh2", "wh1", "wh2"]
    # One site: the read points name none (the single-site workload is unchanged).
    assert all("site" not in point for point in read_points())


def test_server_and_broker_figures_are_positive(tmp_path: Path, mosquitto: Any) -> None:
    figure, payloads = server.server_events(mosquitto.url, tmp_path, 1, warmup_batches=1)
    assert figure.key == "server.events_per_s"
    assert figure.value > 0
    assert figure.detail["events"] == GATEWAYS * BATCH_EVENTS
    # The server process worked while it was timed, on its event loop thread above all.
    assert figure.detail["event_loop_thread_cores"] > 0
    parts = ("event_loop_thread_cores", "other_threads_cores", "child_processes_cores")
    assert figure.detail["server_cpu_cores"] == pytest.approx(
        sum(figure.detail[part] for part in parts), abs=0.003
    )
    # The SQLite file's write connection runs in a child process (server.store.sqlite_process),
    # which wrote the ledger.
    assert figure.detail["child_processes_cores"] > 0
    # The machine was at least as busy as the server; its wait for a CPU is recorded.
    machine = figure.detail["machine"]
    assert machine["busy_cores"] >= figure.detail["server_cpu_cores"] - 0.05
    assert machine["cores"] >= 1
    assert figure.detail["event_loop_waiting_for_cpu_cores"] >= 0
    # Each ingest stage worked on the timed batches (server.metrics, ingest_stage_seconds).
    shares = figure.detail["stage_busy_share"]
    assert set(shares) == {"check", "plan", "write"}
    assert all(share > 0 for share in shares.values())
    assert len(payloads) == GATEWAYS
    raw = broker_raw(mosquitto.host, mosquitto.port, payloads, tmp_path)
    assert raw.key == "broker.raw_msgs_per_s"
    assert raw.value > 0
    assert json.loads(payloads[0])["gateway"] == gateway_name(1)
    # The server's own rollups follower caught up with the run's ledger.
    assert figure.detail["history_rows_behind_at_last_ack"] >= 0
    following = history.follow_rate(
        tmp_path / server.DATABASE_NAME, tmp_path, figure.value, passes=2
    )
    assert following.key == "history.follow_rows_per_s"
    assert following.value > 0
    # Each pass follows from the first row again, into a VictoriaMetrics of its own.
    assert len(following.detail["passes"]) == 2
    assert following.value in following.detail["passes"]
    rows = GATEWAYS * BATCH_EVENTS * 2  # the warm-up's batches and the timed
    assert following.detail["ledger_rows"] == rows
    assert following.detail["points_read_back"] == rows  # one side per pass event
    assert following.detail["server_events_per_s"] == figure.value


def test_stage_costs_time_each_stage_and_apply_every_batch(tmp_path: Path) -> None:
    costs = stage_costs(tmp_path, 2, warmup_batches=1)

    assert set(costs) == {"check", "plan", "write"}
    assert all(cost > 0 for cost in costs.values())
    # Every batch went through: the warm-up's and the timed ones are in the ledger.
    [(rows,)] = _rows(tmp_path / "stage-costs.db", "SELECT COUNT(*) FROM ledger")
    assert rows == GATEWAYS * BATCH_EVENTS * 3


def _rows(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as conn:
        return conn.execute(sql).fetchall()


def test_sqlite_floor_writes_the_rows_the_server_writes(tmp_path: Path, mosquitto: Any) -> None:
    # Enough batches that the last ones ship units received earlier.
    batches = SHIP_LAG_BATCHES
    figure, _ = server.server_events(mosquitto.url, tmp_path, batches, warmup_batches=1)
    floor = sqlite_floor.raw_events(tmp_path, batches, warmup_batches=1)

    assert floor.key == "sqlite.raw_events_per_s"
    assert floor.value > 0
    assert floor.detail["events"] == figure.detail["events"]
    served, raw = tmp_path / "server-events.db", tmp_path / "sqlite-raw.db"
    assert any(row[7] == "shipment" for row in _rows(raw, pg_floor.SAME_ROWS["ledger"]))
    unsynced = tmp_path / "sqlite-raw-nosync.db"
    assert floor.detail["synchronous_off_events_per_s"] > 0
    for table, sql in pg_floor.SAME_ROWS.items():
        assert _rows(raw, sql) == _rows(served, sql), table
        assert _rows(unsynced, sql) == _rows(served, sql), table


def test_bench_broker_starts_and_stops(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    with broker:
        assert wait_listening(broker.port, 1.0)
    assert broker.pid is None


def _pg_admin_dsn() -> str:
    host = os.environ.get("STOCKGATE_TEST_PG_HOST", "127.0.0.1")
    port = os.environ.get("STOCKGATE_TEST_PG_PORT", "5432")
    return f"postgresql://postgres@{host}:{port}/test"


def test_pg_floor_writes_the_rows_the_server_writes(tmp_path: Path, mosquitto: Any) -> None:
    admin = _pg_admin_dsn()
    batches = SHIP_LAG_BATCHES
    name = asyncio.run(pg_floor.create_database(admin, "stockgate_test_bench_pg"))
    dsn = pg_floor.dsn_of(admin, name)
    try:
        figure = server.pg_server_events(
            mosquitto.url,
            tmp_path,
            batches,
            pg_floor.sqlalchemy_url(dsn),
            warmup_batches=1,
            sample_waits=lambda: pg_waits.sampled_waits(dsn, name, interval_s=0.01),
        )
        served = asyncio.run(pg_floor.table_rows(dsn))
    finally:
        asyncio.run(pg_floor.drop_database(admin, name))
    floor_rows: pg_floor.Tables = {}
    floor = pg_floor.raw_events(
        admin, batches, warmup_batches=1, rows_out=floor_rows, executemany_pass=False
    )

    assert figure.key == "server.pg_events_per_s"
    assert figure.value > 0
    assert figure.detail["server_cpu_cores"][0] > 0
    # PostgreSQL's backends worked while it was timed.
    assert figure.detail["machine"]["postgres_cores"] > 0
    assert floor.key == "pg.raw_events_per_s"
    assert floor.value > 0
    assert floor.detail["events"] == figure.detail["events"]
    # The server's sessions were seen while it worked.
    waits = figure.detail["waits"]
    assert waits["samples"] > 0
    assert waits["sessions_by_wait"]
    assert any(row[7] == "shipment" for row in served["ledger"])
    for table in pg_floor.SAME_ROWS:
        assert floor_rows[table] == served[table], table


def test_figures_taken_in_turns_keep_each_ones_median_pass() -> None:
    calls: list[str] = []

    def measure(key: str, values: list[float]) -> Any:
        def one() -> Figure:
            calls.append(key)
            return Figure(key, values[len([c for c in calls if c == key]) - 1], "x/s", "How.")

        return one

    ingest, floor = _in_turns(
        3, measure("ingest", [12.0, 9.0, 15.0]), measure("floor", [20.0, 30.0, 25.0])
    )
    assert calls == ["ingest", "floor"] * 3
    assert (ingest.value, floor.value) == (12.0, 25.0)
    assert ingest.detail["passes"] == [12.0, 9.0, 15.0]
    assert "median of 3 passes" in ingest.how
    (alone,) = _in_turns(1, measure("once", [7.0]))
    assert (alone.value, alone.detail, alone.how) == (7.0, {}, "How.")
