"""What PostgreSQL sessions wait on while a benchmark runs: ``pg_stat_activity`` sampled.

Scale-out is judged by where instances wait: two servers that serialised on one lock or one
hot row would show their sessions in ``Lock`` waits (``transactionid``/``tuple``) on the
same statement most of the time. ``sampled_waits`` polls the database's sessions from a
thread of its own (its own event loop and connection) every ``interval_s`` and counts, per
sample, each session's state and wait event, and for sessions waiting on a lock the start
of the statement that waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import asyncpg

INTERVAL_S: Final = 0.02
STATEMENT_CHARS: Final = 60

SESSIONS: Final = (
    "SELECT state, coalesce(wait_event_type, 'running'), coalesce(wait_event, ''), "
    "left(regexp_replace(query, '\\s+', ' ', 'g'), $2) FROM pg_stat_activity "
    "WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


async def _sample(
    dsn: str, database: str, stop: threading.Event, into: dict[str, object], interval_s: float
) -> None:
    conn = await asyncpg.connect(dsn)
    states: Counter[str] = Counter()
    locked: Counter[str] = Counter()
    samples = 0
    try:
        while not stop.is_set():
            rows = await conn.fetch(SESSIONS, database, STATEMENT_CHARS)
            samples += 1
            for state, wait_type, wait, query in rows:
                if state == "active":
                    states[f"active: {wait_type} {wait}".rstrip()] += 1
                    if wait_type == "Lock":
                        locked[f"{wait}: {query}"] += 1
                else:
                    states[str(state)] += 1
            await asyncio.sleep(interval_s)
    finally:
        await conn.close()
    into["samples"] = samples
    into["interval_s"] = interval_s
    into["sessions_by_wait"] = dict(states.most_common())
    into["lock_waits_by_statement"] = dict(locked.most_common(10))


@contextmanager
def sampled_waits(
    dsn: str, database: str, interval_s: float = INTERVAL_S
) -> Iterator[dict[str, object]]:
    """Sample the sessions of ``database`` (connecting through ``dsn``) while inside.

    The dict it yields is filled when the block ends: ``samples``, ``sessions_by_wait``
    (session-samples per state and wait event; ``active: running`` is work, ``idle in
    transaction`` a transaction waiting for its client) and ``lock_waits_by_statement``.
    """
    into: dict[str, object] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_sample(dsn, database, stop, into, interval_s))
        except BaseException as err:  # reported in the caller's thread below
            errors.append(err)

    thread = threading.Thread(target=run, name="pg-wait-sampler", daemon=True)
    thread.start()
    try:
        yield into
    finally:
        stop.set()
        thread.join()
    if errors:
        raise RuntimeError(f"sampling PostgreSQL waits failed: {errors[0]}") from errors[0]
