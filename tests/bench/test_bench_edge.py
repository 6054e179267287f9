"""Smoke tests of the edge benchmarks: each runs on a tiny size and yields positive figures.

They keep the benchmark code from rotting; they assert nothing about speed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bench import edge, edge_memory, llrp_stream, portal
from edge.readers.llrp_codec import LlrpFramer, decode
from edge.readers.llrp_reports import tag_reads
from wire.identifiers import epc_urn


def test_stream_is_what_it_says() -> None:
    stream = llrp_stream.build(1_000, field_tags=200, warmup_cycles=1)
    frames = list(LlrpFramer().feed(stream.warmup + stream.data))
    reads = [read for frame in frames for read in tag_reads("r", decode(frame).body, 0)[0]]
    assert len(reads) == stream.warmup_reads + stream.reads == 1_200
    assert {read.antenna for read in reads} == {1, 2}
    assert all(read.first_seen_us <= read.last_seen_us for read in reads)
    assert {read.epc_hex for read in reads} <= set(stream.expected_directions)


def test_sgtin96_hex_decodes_to_the_sgtin() -> None:
    assert epc_urn(llrp_stream.sgtin96_hex(812345, 6789)) == (
        "urn:epc:id:sgtin:0614141.812345.6789"
    )


def test_pipeline_run_stores_every_pass(tmp_path: Path) -> None:
    # Long enough (20 s of reader time) for held passes to be handed out while timed.
    stream = llrp_stream.build(20_000, field_tags=100, visits=4, warmup_cycles=2)
    run = asyncio.run(edge.run_pipeline(stream, tmp_path))
    assert run.reads == stream.reads
    assert run.seconds > 0
    assert run.passes == run.committed == stream.distinct_tags
    assert run.timed_passes > 0
    assert run.right_direction > 0
    assert not list(tmp_path.glob("edge-outbox-*"))


def test_throughput_figures_are_positive(tmp_path: Path) -> None:
    figures = edge.throughput(1_000, 1, tmp_path, crowded_field=300, warmup_cycles=1)
    assert [figure.key for figure in figures] == [
        "edge.reads_per_s",
        "edge.sllurp_decode_per_s",
        "edge.reads_per_s_10k_tags",
    ]
    assert all(figure.value > 0 for figure in figures)
    assert figures[0].target is not None
    assert figures[2].target is not None
    assert figures[2].target.bound == pytest.approx(figures[0].value * 0.8, rel=0.01)


def test_memory_probe_reports_the_agent_rss(tmp_path: Path, mosquitto: Any) -> None:
    figure = edge_memory.memory(2_000, tmp_path, mosquitto.url, settle_s=1.0)
    assert figure.key == "edge.rss_mb_1m_buffered"
    assert figure.value > 0
    assert figure.detail["events_held"] == 2_000
    assert figure.detail["batches_published_meanwhile"] > 0


def test_portal_figures_add_up() -> None:
    figures = portal.accuracy(seeds=1)
    assert [figure.key for figure in figures] == [
        "portal.tag_direction_accuracy",
        "portal.wrong_direction_rate",
        "portal.unresolved_rate",
    ]
    totals = figures[0].detail["totals"]
    assert isinstance(totals, dict)
    assert totals["tag_passes"] == sum(totals[name] for name in portal.OUTCOMES)
    assert totals["tag_passes"] >= 900
    assert 0 < figures[0].value <= 1
    assert set(figures[0].detail["scenarios"]) == set(portal.SCENARIOS)  # type: ignore[arg-type]
