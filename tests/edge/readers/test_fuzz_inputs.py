"""Hostile reader and scanner input: bounded frames, no crash, no hang, bounded memory.

The seeded mutator of ``bench.fuzz`` (the same code ``python -m bench --only fuzz`` runs a
million times per kind) here runs a few thousand inputs of each kind, so the suite stays
fast; a failure names the corpus entry and seed to replay.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from bench.fuzz import HANG_S, fuzz_llrp, fuzz_parallel, fuzz_serial, run_mutated
from edge.readers.llrp_codec import HEADER, MAX_FRAME, LlrpFramer, LlrpFramingError
from edge.readers.llrp_link import INLINE_DECODE_BYTES, decode_frame
from firmware_sim.llrp_types import ContentSelector, TagReportEntry
from firmware_sim.report_encoder import ReportEncoder

INPUTS = 3000
MEMORY_BOUND = 8 * 1024 * 1024


@pytest.mark.parametrize("fuzz", [fuzz_llrp, fuzz_serial], ids=["llrp", "serial"])
def test_mutated_input_is_refused_cleanly(fuzz: object) -> None:
    result = fuzz(INPUTS, seed=13, hang_s=HANG_S)  # type: ignore[operator]
    assert result.crashes == result.hangs == []
    assert result.inputs == INPUTS
    # The mutator reaches the decoders: whole frames came out and many were refused.
    assert result.frames > INPUTS // 2
    assert result.handled > INPUTS // 10
    assert result.slowest_s < HANG_S
    assert result.traced_growth_bytes is not None
    assert result.traced_growth_bytes < MEMORY_BOUND


def test_an_oversized_length_is_refused_from_its_header() -> None:
    framer = LlrpFramer()
    header = HEADER.pack((1 << 10) | 61, MAX_FRAME + 1, 7)
    with pytest.raises(LlrpFramingError, match="outside"):
        list(framer.feed(header))
    assert framer.buffered <= len(header)


def _big_report() -> bytes:
    encoder = ReportEncoder(ContentSelector())
    entries = [
        TagReportEntry(f"3074257bf7194e40{serial:08x}", 1 + serial % 2, -50, 1, 2, 3)
        for serial in range(6000)
    ]
    return encoder.encode(1, entries)


async def test_a_large_report_is_decoded_without_stalling_the_loop() -> None:
    raw = _big_report()
    assert INLINE_DECODE_BYTES < len(raw) <= MAX_FRAME
    [frame] = list(LlrpFramer().feed(raw))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    before = ticks
    decoded = await decode_frame(frame)
    during = ticks - before
    ticker.cancel()
    assert decoded.name == "RO_ACCESS_REPORT"
    assert len(decoded.body["TagReportData"]) == 6000
    # Decoded inline, the loop would not have run at all until the decode ended.
    assert during > 1


def test_a_frame_at_the_bound_is_framed() -> None:
    body = b"\x00" * (MAX_FRAME - HEADER.size)
    raw = HEADER.pack((1 << 10) | 1000, MAX_FRAME, 1) + body
    assert [frame.msg_type for frame in LlrpFramer().feed(raw)] == [1000]


def test_an_input_that_hangs_is_stopped_and_counted() -> None:
    calls = 0

    def step(_data: bytes, _rng: random.Random) -> tuple[int, bool]:
        nonlocal calls
        calls += 1
        if calls % 5 == 0:
            time.sleep(5)  # the alarm ends this long before it would
        return 1, False

    began = time.perf_counter()
    result = run_mutated(20, 3, [b"input"], step, None, trace_memory=False, hang_s=0.1)
    assert result.inputs == 20
    assert [hang.split(" (")[0] for hang in result.hangs] == [
        f"seed 3, input {n}" for n in (4, 9, 14, 19)
    ]
    assert result.crashes == []
    assert result.frames == 16
    assert time.perf_counter() - began < 4


def test_a_parallel_run_covers_the_count_in_several_processes() -> None:
    result = fuzz_parallel("serial", 1001, seed=13, processes=2)
    assert (result.inputs, result.processes) == (1001, 2)
    assert result.crashes == result.hangs == []
    assert result.frames > 1001 // 2
    assert result.peak_rss_bytes > 0
