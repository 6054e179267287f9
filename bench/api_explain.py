"""Where an API query's time goes: the store query alone, its SQL and SQLite's plan.

Run (untimed, after the measurement) when an API figure misses its target. For each
request kind it calls the server's own query function (``server.queries.movements`` or
``server.queries.stock``) directly on a ``Store`` over the same database, ``samples``
times, capturing each SQL statement SQLAlchemy sends (the engine's
``before_cursor_execute`` event); then it asks SQLite for ``EXPLAIN QUERY PLAN`` of the
slowest kind's statements. Comparing the query time with the HTTP p99 says whether the time
is in the database or in the API layer.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench import ledger_gen
from bench.api_requests import MOVEMENT_KINDS, STOCK_KINDS, Kind, Params
from bench.cpu import percentile
from server.config.settings import DatabaseSettings
from server.queries.movements import MovementQuery, movements
from server.queries.stock import StockQuery, stock
from server.store.database import Store


def _text(params: Params, name: str) -> str | None:
    value = params.get(name)
    return None if value is None else str(value)


def _time(params: Params, name: str) -> datetime | None:
    value = _text(params, name)
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _run(store: Store, kind: Kind, params: Params) -> None:
    limit = int(params.get("limit", 100))
    async with store.read("benchmark query") as conn:
        if kind.path.endswith("/movements"):
            await movements(
                conn,
                MovementQuery(
                    epc=_text(params, "epc"),
                    gtin=_text(params, "gtin"),
                    sku=_text(params, "sku"),
                    location=_text(params, "location"),
                    since=_time(params, "since"),
                    until=_time(params, "until"),
                    limit=limit,
                ),
            )
        else:
            await stock(
                conn,
                StockQuery(
                    gtin=_text(params, "gtin"),
                    sku=_text(params, "sku"),
                    location=_text(params, "location"),
                    limit=limit,
                ),
            )


async def _measure(
    path: Path, generated: ledger_gen.Generated, kinds: Sequence[Kind], samples: int, seed: int
) -> dict[str, Any]:
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        # The queries only; BEGIN and the like have no plan to show.
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", capture)
    rng = random.Random(seed)
    found: dict[str, Any] = {}
    try:
        for kind in kinds:
            latencies: list[float] = []
            slowest: tuple[float, list[tuple[str, Any]]] = (-1.0, [])
            for _ in range(samples):
                params = kind.query(rng, generated)
                captured.clear()
                started = time.perf_counter()
                await _run(store, kind, params)
                elapsed = (time.perf_counter() - started) * 1000
                latencies.append(elapsed)
                if elapsed > slowest[0]:
                    slowest = (elapsed, list(captured))
            found[f"{kind.path} {kind.name}"] = {
                "what": kind.text,
                "query_p50_ms": round(percentile(latencies, 50), 2),
                "query_p99_ms": round(percentile(latencies, 99), 2),
                "slowest_ms": round(slowest[0], 2),
                "statements": slowest[1],
            }
    finally:
        await store.close()
    return found


def _plan(path: Path, statement: str, parameters: Any) -> list[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}", tuple(parameters or ())).fetchall()
    return [str(row[-1]) for row in rows]


def explain(
    path: Path, generated: ledger_gen.Generated, out: Path, samples: int = 20, seed: int = 9
) -> Path:
    """Write the per-kind query times, SQL and plans for every API request kind to ``out``."""
    kinds = [kind for kind in (*MOVEMENT_KINDS, *STOCK_KINDS) if not kind.second_page]
    found = asyncio.run(_measure(path, generated, kinds, samples, seed))
    lines = [
        "# API queries: store time, SQL and SQLite plans",
        "",
        f"{generated.ledger_rows:,} ledger rows. Each kind run {samples} times through the "
        "server's query function on a Store (no HTTP); the statements of the slowest run, "
        "with SQLite's EXPLAIN QUERY PLAN. Compare query_p99_ms with the HTTP p99 in "
        "BENCHMARKS.md.",
        "",
    ]
    for name, info in found.items():
        lines += [
            f"## {name}: {info['what']}",
            "",
            f"query p50 {info['query_p50_ms']} ms, p99 {info['query_p99_ms']} ms, "
            f"slowest {info['slowest_ms']} ms",
            "",
        ]
        for statement, parameters in info["statements"]:
            lines += ["```sql", " ".join(statement.split()), f"-- parameters: {parameters!r}"]
            lines += [f"-- plan: {step}" for step in _plan(path, statement, parameters)]
            lines += ["```", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    return out
