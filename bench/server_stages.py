"""What each ingest stage costs an event when the stages run one after the other.

A detail of ``server.events_per_s``: the benchmark's batches (``bench.server_workload``,
after the same warm-up) go through one ``Ingestor`` in this process, on a fresh SQLite
file with the server's settings, ``GROUP_BATCHES`` at a time: each batch checked
(``Ingestor.prepare``), the group planned (``Ingestor.plan``), then written and acked
(``Ingestor.apply``, Acks to a publisher that drops them), each stage timed on its own. No
MQTT and nothing overlaps, so the sum is what one event costs the server's process when
its stages cannot overlap, and its inverse the rate they would give one after the other:
the timed server's rate against it says how much of the work the pipeline overlaps
(server/README.md, "Where one SQLite process stops").
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Final

from bench.files import remove_database
from bench.server_workload import build_batches, read_points
from plumbing.settings import load
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.intake import Prepared
from server.metrics import Metrics
from server.store.database import Store

GROUP_BATCHES: Final = 8
"""Batches planned and written together (two of each of the 4 gateways)."""
STAGES: Final = ("check", "plan", "write")
_API_KEY: Final = "stage-costs-" + "k" * 20


async def _drop(_topic: str, _payload: bytes) -> None:
    return None


async def _stage_costs(
    database: Path, batches_per_gateway: int, warmup_batches: int
) -> dict[str, float]:
    settings = load(
        ServerSettings,
        None,
        database={"url": f"sqlite+aiosqlite:///{database}"},
        read_points=read_points(),
        api={"host": "127.0.0.1", "port": 0, "keys": [{"key": _API_KEY, "role": "admin"}]},
    )
    store = Store.open(settings.database)
    try:
        await store.migrate()
        ingestor = Ingestor(store, settings, _drop, Metrics())
        per_gateway = build_batches(warmup_batches + batches_per_gateway)
        # In the order the gateways publish them: each gateway's next batch in turn.
        rounds = [[mine[n] for mine in per_gateway] for n in range(len(per_gateway[0]))]
        warmup = [batch for batches in rounds[:warmup_batches] for batch in batches]
        timed = [batch for batches in rounds[warmup_batches:] for batch in batches]
        for batch in warmup:
            await ingestor.handle(batch.topic, batch.payload)
        spent = dict.fromkeys(STAGES, 0.0)
        for start in range(0, len(timed), GROUP_BATCHES):
            began = time.perf_counter()
            group = [
                await ingestor.prepare(batch.topic, batch.payload)
                for batch in timed[start : start + GROUP_BATCHES]
            ]
            checked = time.perf_counter()
            prepared = [member for member in group if isinstance(member, Prepared)]
            if len(prepared) != len(group):
                raise RuntimeError("a benchmark batch was rejected")
            ahead = await ingestor.plan(prepared)
            planned = time.perf_counter()
            results = await ingestor.apply(prepared, ahead)
            written = time.perf_counter()
            if any(result.outcome != "applied" for result in results):
                raise RuntimeError(f"a benchmark batch was not applied: {results}")
            spent["check"] += checked - began
            spent["plan"] += planned - checked
            spent["write"] += written - planned
    finally:
        await store.close()
    events = sum(batch.events for batch in timed)
    return {stage: round(seconds / events * 1e6, 2) for stage, seconds in spent.items()}


def stage_costs(workdir: Path, batches_per_gateway: int, warmup_batches: int) -> dict[str, float]:
    """Microseconds an event spends in each stage (``STAGES``), one stage after the other."""
    database = workdir / "stage-costs.db"
    remove_database(database)
    return asyncio.run(_stage_costs(database, batches_per_gateway, warmup_batches))
