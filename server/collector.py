"""The garbage collector of a server's processes (the API's and the report workers').

A server process allocates many short-lived objects per event and per report (validated
models, rows, rule outcomes, books) while it holds a large, stable heap (modules,
SQLAlchemy's metadata, caches). With Python's defaults the collector keeps rescanning that
heap: it took about a quarter of the ingest loop's CPU in the ``server.events_per_s``
workload, and a full collection in a report worker took 50-60 ms at 10 million ledger rows.
"""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 500_000
"""Allocations between young-generation collections in a server process (Python's is 700).

A young collection walks every young object still alive, and under load most of those are
the batches ingest holds in its pipeline (some hundred thousand objects), so each one took
40-80 ms of the event loop however often it ran. With 50,000, 28 of them took 1.5 s of the
loop in a 200,000-event run of the ``server.events_per_s`` workload; with 500,000 none ran
in that run, and the server's peak RSS was the same (262 and 265 MB): little of what ingest
drops is cyclic garbage. Four alternating runs of 80,000 events: 12.1k events/s on
average against 11.2k."""


def tune_gc() -> None:
    """Set up the garbage collector of a process that runs the server (or its report
    worker) and nothing else, once start-up has imported what it needs.

    Freezing what start-up built and collecting the young generation less often cut the
    ingest loop's CPU per event by 20-30 % (bench/, in-process). Cycles are still
    collected; memory stays bounded by the thresholds.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)
