"""``stockgate_ingest_stage_seconds_total``: how long each ingest stage was in progress
(checking messages, planning groups ahead, writing them), on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from server_helpers import Batches, checked, counter_totals, sgtin

from server.ingest.consumer import Ingestor
from server.metrics import INGEST_STAGES, Metrics


def _stages(metrics: Metrics) -> dict[str, float]:
    return counter_totals(metrics.ingest_stage_seconds, "stage")


async def test_each_stage_counts_the_time_it_was_in_progress(
    ingestor: Ingestor, batches: Batches, metrics: Metrics
) -> None:
    assert _stages(metrics) == dict.fromkeys(INGEST_STAGES, 0.0)

    started = time.perf_counter()
    group = [await checked(ingestor, batches, [batches.event(epc=sgtin(n)) for n in (1, 2)])]
    checking = time.perf_counter() - started
    after_check = _stages(metrics)
    assert 0 < after_check["check"] <= checking
    assert after_check["plan"] == after_check["write"] == 0

    started = time.perf_counter()
    ahead = await ingestor.plan(group)
    planning = time.perf_counter() - started
    after_plan = _stages(metrics)
    assert 0 < after_plan["plan"] <= planning
    assert after_plan["check"] == after_check["check"]
    assert after_plan["write"] == 0

    started = time.perf_counter()
    [result] = await ingestor.apply(group, ahead)
    writing = time.perf_counter() - started
    after_write = _stages(metrics)
    assert result.outcome == "applied"
    assert 0 < after_write["write"] <= writing
    assert (after_write["check"], after_write["plan"]) == (after_plan["check"], after_plan["plan"])


async def test_a_rejected_message_counts_as_checking(ingestor: Ingestor, metrics: Metrics) -> None:
    started = time.perf_counter()
    result = await ingestor.handle("stockgate/v1/wh1/gw-dock-1/events", b"{not json")
    elapsed = time.perf_counter() - started

    assert result.outcome == "rejected"
    stages = _stages(metrics)
    assert 0 < stages["check"] <= elapsed
    assert stages["plan"] == stages["write"] == 0
