"""API figures: p99 latency of movement pages and stock queries over a large ledger.

A ledger of ``--ledger-rows`` rows (default 10 million) is generated into the migrated schema
(``bench.ledger_gen``) and checked with the server's own ``check_ledger``. Then the real
server runs on it as its own process (``stockgate server``: uvicorn on a loopback TCP port)
and one httpx client sends requests over one keep-alive connection, one at a time, with a
viewer key. Each request kind (``bench.api_requests``) is sent ``samples`` times, in a
shuffled order, after a short untimed warm-up; latency is from sending the request to
having read the whole response, on the client (whose garbage collector runs between
requests, not while one is timed). The database file was just written, so the OS's page
cache holds what fits of it, as on a server that has been running (at 10 million ledger
rows the history group's file, 22 GB, is nearly the machine's memory: not all of it
fits). The history endpoints and the reports are measured the same way by the
``history`` group (``bench.history.latency``).
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from bench import ledger_gen
from bench.api_explain import explain
from bench.api_requests import (
    FLOOR_KIND,
    MOVEMENT_KINDS,
    PAGE,
    STOCK_KINDS,
    Kind,
    Params,
)
from bench.cpu import percentile
from bench.figures import Figure, Target
from bench.files import remove_database
from bench.server_proc import API_KEY, ServerProcess
from server.config.settings import DatabaseSettings
from server.store.check import check_ledger
from server.store.database import Store

P99_TARGET_MS: Final = 50.0
WARMUP_PER_KIND: Final = 5
REQUEST_TIMEOUT_S: Final = 60.0


@dataclass(slots=True)
class Samples:
    latencies_ms: list[float]
    rows: list[int]


async def _get(
    client: httpx.AsyncClient, path: str, params: Params
) -> tuple[float, dict[str, object]]:
    # The client's own garbage collector paused while a request is timed (and run in
    # full between requests): after a report of 37,000 rows has been parsed, a full
    # collection in this process took 50 ms and fell inside the next timed request.
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        response = await client.get(path, params=params)
        body = response.content
        elapsed_ms = (time.perf_counter() - started) * 1000
    finally:
        gc.enable()
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} {params} -> {response.status_code}: {body[:500]!r}")
    data = response.json()
    if not isinstance(data, dict):
        raise RuntimeError(f"GET {path} returned {type(data).__name__}, not an object")
    return elapsed_ms, data


async def _one(client: httpx.AsyncClient, kind: Kind, params: Params) -> tuple[float, int]:
    elapsed_ms, data = await _get(client, kind.path, params)
    if kind.second_page:
        cursor = data.get("next_cursor")
        if not isinstance(cursor, str):
            raise RuntimeError(f"{kind.name}: the first page has no next_cursor: {params}")
        elapsed_ms, data = await _get(client, kind.path, {**params, "cursor": cursor})
    items = data.get("items")
    return elapsed_ms, len(items) if isinstance(items, list) else 0


async def measure(
    base_url: str,
    generated: ledger_gen.Generated,
    kinds: Sequence[Kind],
    samples: int,
    seed: int,
    warmup_per_kind: int = WARMUP_PER_KIND,
    timeout_s: float = REQUEST_TIMEOUT_S,
    samples_of: Mapping[str, int] | None = None,
) -> dict[str, Samples]:
    """Send every kind ``samples`` times (or ``samples_of[kind.key]``; shuffled), return
    latencies and rows per kind."""
    rng = random.Random(seed)
    counts = samples_of or {}
    jobs = [
        (kind, kind.query(rng, generated))
        for kind in kinds
        for _ in range(counts.get(kind.key, samples))
    ]
    rng.shuffle(jobs)
    warmup = [(kind, kind.query(rng, generated)) for kind in kinds for _ in range(warmup_per_kind)]
    results = {kind.key: Samples([], []) for kind in kinds}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout_s) as client:
        for kind, params in warmup:
            await _one(client, kind, params)
        for kind, params in jobs:
            elapsed_ms, rows = await _one(client, kind, params)
            results[kind.key].latencies_ms.append(elapsed_ms)
            results[kind.key].rows.append(rows)
    return results


def _summary(results: Mapping[str, Samples], kinds: Sequence[Kind]) -> dict[str, object]:
    out: dict[str, object] = {}
    for kind in kinds:
        got = results[kind.key]
        out[kind.name] = {
            "what": kind.text,
            "requests": len(got.latencies_ms),
            "p50_ms": round(percentile(got.latencies_ms, 50), 2),
            "p99_ms": round(percentile(got.latencies_ms, 99), 2),
            "max_ms": round(max(got.latencies_ms), 2),
            "mean_rows": round(sum(got.rows) / len(got.rows), 1),
        }
    return out


def latencies(results: Mapping[str, Samples], kinds: Sequence[Kind]) -> list[float]:
    """Every latency measured of ``kinds``, in ms."""
    return [ms for kind in kinds for ms in results[kind.key].latencies_ms]


def p99_figure(
    key: str,
    results: Mapping[str, Samples],
    kinds: Sequence[Kind],
    request: str,
    samples: int,
    target_ms: float,
    common: Mapping[str, object],
    more: Mapping[str, object] | None = None,
) -> Figure:
    """The p99 latency over all requests of ``kinds`` as figure ``key``.

    Args:
        key: the figure's key.
        results: what ``measure`` returned.
        kinds: the request kinds the figure is of.
        request: the ``how`` text up to the request, e.g. ``"<the data>. GET /api/v1/stock"``.
        samples: requests per kind, for the ``how`` text.
        target_ms: the p99 to meet.
        common: detail shared with the run's other figures.
        more: detail of this figure after its p50 and its kinds' summary.
    """
    measured_ms = latencies(results, kinds)
    kinds_text = "; ".join(kind.text for kind in kinds)
    return Figure(
        key=key,
        value=round(percentile(measured_ms, 99), 2),
        unit="ms",
        how=(
            f"{request}, {samples} each of: {kinds_text}; p99 over all {len(measured_ms)} requests."
        ),
        target=Target("<=", target_ms),
        detail={
            **common,
            "p50_ms": round(percentile(measured_ms, 50), 2),
            "by_kind": _summary(results, kinds),
            **(more or {}),
        },
    )


async def _check(path: Path) -> tuple[list[str], float]:
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    started = time.perf_counter()
    try:
        return await check_ledger(store), time.perf_counter() - started
    finally:
        await store.close()


def latency(
    mqtt_url: str,
    workdir: Path,
    ledger_rows: int,
    samples: int,
    *,
    seed: int = 5,
    warmup_per_kind: int = WARMUP_PER_KIND,
    explain_to: Path | None = None,
) -> list[Figure]:
    """``api.movements_p99_ms`` and ``api.stock_p99_ms`` over ``ledger_rows`` ledger rows.

    With ``explain_to`` set, a figure that misses its target is followed (untimed) by
    ``bench.api_explain.explain`` on the same database, written there.
    """
    path = workdir / "api-ledger.db"
    remove_database(path)
    explained: Path | None = None
    try:
        generated = ledger_gen.generate(path, ledger_rows)
        problems, check_seconds = asyncio.run(_check(path))
        if problems:
            raise RuntimeError(f"generated balances disagree with the ledger: {problems[:3]}")
        size_mb = path.stat().st_size / (1024 * 1024)
        with ServerProcess(workdir, mqtt_url=mqtt_url, database=path, read_points=[]) as server:
            kinds = (*MOVEMENT_KINDS, *STOCK_KINDS, FLOOR_KIND)
            results = asyncio.run(
                measure(server.base_url, generated, kinds, samples, seed, warmup_per_kind)
            )
        floor_ms = results[FLOOR_KIND.key].latencies_ms
        worst_ms = max(
            percentile(latencies(results, MOVEMENT_KINDS), 99),
            percentile(latencies(results, STOCK_KINDS), 99),
        )
        missed = worst_ms > P99_TARGET_MS
        if explain_to is not None and missed:
            explained = explain(path, generated, explain_to)
    finally:
        remove_database(path)
    data_text = (
        f"{generated.ledger_rows:,} ledger rows ({generated.units:,} units over two years, "
        f"{ledger_gen.SITES} sites, {generated.locations} locations, {generated.items:,} items; "
        f"{generated.balances:,} balance rows; SQLite file {size_mb:,.0f} MB, generated in "
        f"{generated.seconds:,.0f} s, balances verified by check_ledger in "
        f"{check_seconds:,.0f} s). `stockgate server` in its own process (uvicorn, loopback "
        "TCP); httpx, one keep-alive connection, one request at a time, viewer key; "
        "latency = request sent to response body read; for scale, GET /healthz on the same "
        f"connection: p50 {percentile(floor_ms, 50):.1f} ms"
    )
    common = {
        "ledger_rows": generated.ledger_rows,
        "units": generated.units,
        "balances": generated.balances,
        "database_mb": round(size_mb, 1),
        "generate_seconds": round(generated.seconds, 1),
        "generate_phases_seconds": generated.phases,
        "check_ledger_seconds": round(check_seconds, 1),
        "transport": "httpx.AsyncClient over TCP to uvicorn (stockgate server subprocess)",
        "http_floor_healthz_p50_ms": round(percentile(floor_ms, 50), 2),
        "http_floor_healthz_p99_ms": round(percentile(floor_ms, 99), 2),
        "profile": str(explained) if explained is not None else None,
    }
    return [
        p99_figure(
            "api.movements_p99_ms",
            results,
            MOVEMENT_KINDS,
            f"{data_text}. GET /api/v1/movements?limit={PAGE}",
            samples,
            P99_TARGET_MS,
            common,
        ),
        p99_figure(
            "api.stock_p99_ms",
            results,
            STOCK_KINDS,
            f"Same ledger and server. GET /api/v1/stock?limit={PAGE}",
            samples,
            P99_TARGET_MS,
            common,
        ),
    ]
