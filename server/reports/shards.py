"""Whole-ledger reports split by item among processes: this one and ``[history]
report_workers`` worker processes.

Why. A report over every item reads some 20,000 valuation books (``server.reports.
book_reads``) and makes a row of each: Python work, which one process does on one core (the
GIL), while the server's machine has more. Nearly all of it is per item, so the items are
split by a hash of their id (``Scope.shard``, ``valuation_reports.shard_of``): this process
computes one shard on a read connection of its own while each worker process computes
another on its own, and the rows are put together as one process would have made them
(each report's ``combine``: rows of distinct items sorted into the report's order, or sums
per key added up). Half the items cost 0.5-0.6 of the time of all of them (the rest is
per report, not per item).

What it costs. Each shard reads the database in a snapshot of its own, so a report made
while ingest commits may hold a later row for some items and not for others, as the two
connections of ``Store.read_pair`` could before. A worker's rows cross to this process as
tuples of their fields (rows of frozen dataclasses pickled whole cost several times more:
``Decimal``'s and the dataclasses' own reductions). A worker that dies (killed, out of
memory) is replaced and its shard computed here; a request that ends early leaves its
workers' shards to finish and be dropped. A server that is killed leaves no worker behind:
each ends itself within ``PARENT_CHECK_S`` of its server's end.

Bounds. A shard lists its items to the database (``IN``), so a catalogue of more than
``MAX_SHARD_ITEMS`` items per shard is reported by this process alone (PostgreSQL takes at
most 32,767 parameters in a statement).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import operator
import os
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final, TypeVar

import sqlalchemy as sa

from server.collector import tune_gc
from server.config.settings import DatabaseSettings
from server.reports.gc_pause import collector_paused
from server.reports.valuation_reports import Scope
from server.store.database import Store
from server.store.schema.core import items

log = logging.getLogger(__name__)

MAX_SHARD_ITEMS: Final = 20_000
"""Items a shard may list to the database; more items than this per shard: no split."""
PARENT_CHECK_S: Final = 0.5
"""How often a worker looks whether the server that started it is still there."""

Row = TypeVar("Row")
Report = Callable[..., Awaitable[list[Any]]]
"""``report(conn, *args, scope=...)``: the rows of the items ``scope`` covers."""
Combine = Callable[[list[list[Row]]], list[Row]]
Packed = tuple[type | None, list[tuple[Any, ...]]]


# --- in a worker process ----------------------------------------------------------------

_worker: tuple[asyncio.AbstractEventLoop, Store] | None = None
"""The worker's own event loop and store (``_open``), used by every shard it computes."""


def _open(database: DatabaseSettings, server_pid: int) -> None:
    global _worker
    # A server killed (kill -9, the OOM killer) cannot tell its workers to stop, and they
    # would wait for shards forever, holding their memory and database connections. (The
    # server's pid comes from the server: one killed while this worker started is gone.)
    threading.Thread(
        target=_exit_with_parent, args=(server_pid,), name="report-worker-parent", daemon=True
    ).start()
    # What the shards run, imported now, so that the heap frozen below holds it.
    import server.reports.abc_xyz  # noqa: F401 (and the valuation reports it builds on)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _worker = (loop, Store.open(database))
    tune_gc()


def _exit_with_parent(parent: int) -> None:
    """End this worker once ``parent`` (the server) is gone: the worker is then another
    process's child."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _ready() -> bool:
    return _worker is not None


def _compute(report: Report, args: tuple[Any, ...], scope: Scope) -> Packed:
    assert _worker is not None, "worker started without _open"
    loop, store = _worker

    async def rows() -> list[Any]:
        async with store.read("reporting a shard") as conn:
            return await report(conn, *args, scope=scope)

    with collector_paused():
        return _pack(loop.run_until_complete(rows()))


def _pack(rows: list[Any]) -> Packed:
    if not rows:
        return None, []
    kind = type(rows[0])
    fields = operator.attrgetter(*(field.name for field in dataclasses.fields(kind)))
    return kind, [fields(row) for row in rows]


def _unpack(packed: Packed) -> list[Any]:
    kind, values = packed
    if kind is None:
        return []
    return [kind(*row) for row in values]


# --- in the API's process ---------------------------------------------------------------


class ReportPool:
    """``workers`` processes (spawned, each with its own database connections) that compute
    shards of reports; ``close`` ends them."""

    def __init__(self, database: DatabaseSettings, workers: int) -> None:
        self.workers = workers
        self.computed = 0
        """Shards the workers computed."""
        self._database = database
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_open,
            initargs=(self._database, os.getpid()),
        )

    def start(self) -> None:
        """Start every worker now, in the background (a spawned process takes a second or
        two to import the server), so the first report does not wait for them."""
        for _ in range(self.workers):
            self._executor.submit(_ready)

    async def compute(self, report: Report, args: tuple[Any, ...], scope: Scope) -> list[Any]:
        """``report``'s rows for ``scope`` computed by a worker.

        Raises:
            BrokenProcessPool: the worker died; the pool is replaced for the next call.
        """
        loop = asyncio.get_running_loop()
        try:
            packed = await loop.run_in_executor(self._executor, _compute, report, args, scope)
        except BrokenProcessPool:
            broken, self._executor = self._executor, self._new_executor()
            broken.shutdown(wait=False, cancel_futures=True)
            raise
        self.computed += 1
        return _unpack(packed)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ReportShards:
    """Runs a report over every item it covers, split among this process and ``pool``'s
    workers (without a pool, or for a scope that names one SKU: here alone)."""

    def __init__(self, store: Store, pool: ReportPool | None = None) -> None:
        self._store = store
        self._pool = pool

    async def rows(
        self,
        doing: str,
        report: Report,
        args: tuple[Any, ...],
        scope: Scope,
        combine: Combine[Row],
        *,
        side: bool = False,
    ) -> list[Row]:
        """``report(conn, *args, scope=scope)``'s rows, put together by ``combine`` when
        split; ``side``: the report takes a second connection (``side=``) when it runs in
        one piece."""
        count = 1 if self._pool is None else self._pool.workers + 1
        if count == 1 or scope.sku is not None or await self._items() > MAX_SHARD_ITEMS * count:
            return await self._here(doing, report, args, scope, side=side)
        pool = self._pool
        assert pool is not None
        shards = [dataclasses.replace(scope, shard=(index, count)) for index in range(count)]
        workers = [asyncio.ensure_future(pool.compute(report, args, shard)) for shard in shards[1:]]
        try:
            parts = [await self._here(doing, report, args, shards[0])]
            for shard, worker in zip(shards[1:], workers, strict=True):
                try:
                    parts.append(await worker)
                except BrokenProcessPool:
                    log.warning("reports: a worker process died; its shard is computed here")
                    parts.append(await self._here(doing, report, args, shard))
        finally:
            for worker in workers:
                worker.cancel()
        return combine(parts)

    async def _items(self) -> int:
        async with self._store.read("counting items") as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(items)) or 0)

    async def _here(
        self,
        doing: str,
        report: Report,
        args: tuple[Any, ...],
        scope: Scope,
        *,
        side: bool = False,
    ) -> list[Any]:
        if side:
            async with self._store.read_pair(doing) as (conn, second):
                return await report(conn, *args, scope=scope, side=second)
        async with self._store.read(doing) as conn:
            return await report(conn, *args, scope=scope)


def concatenated(order: Callable[[Row], Any]) -> Combine[Row]:
    """Rows of distinct items from each shard, in ``order``."""

    def combine(parts: list[list[Row]]) -> list[Row]:
        return sorted((row for part in parts for row in part), key=order)

    return combine


def added(
    key: Callable[[Row], Hashable], totals: Sequence[str], order: Callable[[Row], Any]
) -> Combine[Row]:
    """Rows of sums per ``key`` from each shard, one per key with its ``totals`` fields
    added up, in ``order``."""

    def combine(parts: list[list[Row]]) -> list[Row]:
        merged: dict[Hashable, Row] = {}
        for part in parts:
            for row in part:
                held = merged.get(key(row))
                if held is not None:
                    sums = {name: getattr(held, name) + getattr(row, name) for name in totals}
                    row = dataclasses.replace(held, **sums)  # type: ignore[type-var]
                merged[key(row)] = row
        return sorted(merged.values(), key=order)

    return combine
