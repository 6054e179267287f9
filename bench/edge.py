"""Edge throughput figures: reads per second through the whole pipeline, and bare sllurp.

The pipeline run drives the product's own pieces in one asyncio loop pinned to one core,
wired the way ``EdgeAgent`` wires them (``_read``, ``_tick``, ``_store``):

    bytes ─► LlrpFramer.feed ─► decode (sllurp) ─► tag_reads ─► ReadRates.add
          ─► asyncio.Queue (the reader's output queue)
          ─► ReadPoints.read: the reader's software filter ([llrp.filter]: EPC prefix
             include, RSSI threshold), then the portal's PassTracker
          ─► ReadPoints.tick every TICK_S ─► to_event ─► Outbox.append
          ─► the Outbox's own flusher (SQLite on disk, WAL, synchronous=FULL)

The bytes are fed in ``READ_CHUNK`` pieces (what one socket read returns at most) with an
``await`` between pieces, as the reader's socket loop has. The clock the read points see is
the reader time of the reads, so passes depart after ``departure_timeout_s`` of *stream*
time while the replay runs flat out. The timed part ends when the last read has been
tracked and every event of the passes ended so far has been committed, so the figure
includes the durable write of those events. The stream starts in steady state after an
untimed warm-up (see ``bench.llrp_stream``); the passes still open at its end are then
ended, stored and counted outside the timing, since in a live stream they would end
during later reads.
"""

from __future__ import annotations

import asyncio
import cProfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import ValidationError
from sllurp.llrp import LLRPMessage

from bench import llrp_stream
from bench.cpu import median, one_core
from bench.edge_config import GATEWAY, READER, edge_settings
from bench.figures import Figure, Target
from bench.files import remove_database
from bench.profiling import write_text
from edge.buffer.outbox import Outbox, OutboxFull
from edge.config import EdgeSettings
from edge.intake import TICK_S
from edge.passes import Pass
from edge.rates import ReadRates
from edge.readers.llrp_codec import LlrpFramer, decode
from edge.readers.llrp_link import READ_CHUNK
from edge.readers.llrp_reports import tag_reads
from edge.readers.types import TagRead
from edge.readpoints import Finished, ReadPoints
from wire.identifiers import IdentifierError

REPORT: Final = "RO_ACCESS_REPORT"
READER_QUEUE: Final = 10_000
"""The LLRP reader's output queue size (``LlrpReader`` default)."""
READS_TARGET: Final = 20_000.0
TEN_K_TOLERANCE: Final = 0.20
CROWDED_FIELD: Final = 10_000
"""Tags in the field for ``edge.reads_per_s_10k_tags``."""


@dataclass(frozen=True, slots=True)
class PipelineRun:
    """One replay of a stream through the pipeline."""

    reads: int
    seconds: float
    timed_passes: int
    """Passes that ended (and whose events were committed) inside the timed part."""
    passes: int
    committed: int
    right_direction: int
    max_tracked: int
    evicted: int
    commits: int

    @property
    def reads_per_s(self) -> float:
        return self.reads / self.seconds


@dataclass(slots=True)
class _Tally:
    reads: int = 0
    passes: int = 0
    refused: int = 0
    bad: int = 0
    right_direction: int = 0
    max_tracked: int = 0
    commits: int = 0
    ignored: int = 0
    """Reads no read point took (none expected: both antennas belong to the portal)."""

    def committed(self) -> None:
        self.commits += 1


class _Replay:
    """The agent's wiring around one reader and one portal, fed from recorded bytes.

    One framer for the whole stream (one connection); the tracker's clock is the reader
    time of the reads, ticked every ``TICK_S`` of it.
    """

    def __init__(self, settings: EdgeSettings, outbox: Outbox, expected: dict[str, str]) -> None:
        self.outbox = outbox
        self.expected = expected
        self.points = ReadPoints(settings)
        self.departure_s = max(portal.departure_timeout_s for portal in settings.portals)
        self.framer = LlrpFramer()
        self.rates = ReadRates(now=time.monotonic())
        self.tally = _Tally()
        self.now = 0.0
        self.next_tick = TICK_S

    async def feed(self, data: bytes) -> None:
        """Push ``data`` through reader, queue and tracker until every read is tracked."""
        queue: asyncio.Queue[TagRead | None] = asyncio.Queue(READER_QUEUE)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._read_loop(data, queue), name="bench-reader")
            tasks.create_task(self._track_loop(queue), name="bench-tracker")

    async def _read_loop(self, data: bytes, queue: asyncio.Queue[TagRead | None]) -> None:
        """What ``LlrpReader`` does per socket read: frame, decode, convert, count, queue."""
        framer = self.framer
        rates = self.rates
        for offset in range(0, len(data), READ_CHUNK):
            for frame in framer.feed(data[offset : offset + READ_CHUNK]):
                decoded = decode(frame)
                if decoded.name != REPORT:
                    continue
                reads, _ = tag_reads(READER, decoded.body, time.time_ns() // 1000)
                rates.add(reads, time.monotonic())
                for read in reads:
                    if queue.full():
                        await queue.put(read)
                    else:
                        queue.put_nowait(read)
            # The next socket read is an await: the consumer and the flusher get the loop.
            await asyncio.sleep(0)
        await queue.put(None)

    async def _track_loop(self, queue: asyncio.Queue[TagRead | None]) -> None:
        """What ``EdgeAgent._read`` and ``_tick`` do, on the stream's clock."""
        base = llrp_stream.BASE_TIME_US
        route = self.points.read
        points = self.points
        tally = self.tally
        now = self.now
        next_tick = self.next_tick
        while True:
            read = await queue.get()
            if read is None:
                break
            tally.reads += 1
            seen = (read.last_seen_us - base) / 1_000_000
            if seen > now:
                now = seen
            if not route(READER, read, now):
                tally.ignored += 1
            if now >= next_tick:
                tally.max_tracked = max(tally.max_tracked, self.tracked)
                self._store(points.tick(now))
                next_tick = now + TICK_S
        self.now = now
        self.next_tick = next_tick

    @property
    def tracked(self) -> int:
        return sum(len(tracker) for tracker in self.points.trackers)

    def _store(self, passes: list[Finished]) -> None:
        """What ``EdgeAgent._store`` does with ended passes (plus a direction check)."""
        tally = self.tally
        for finished in passes:
            try:
                self.outbox.append(finished.to_event)
            except OutboxFull:
                tally.refused += 1
                continue
            except (IdentifierError, ValidationError):
                tally.bad += 1
                continue
            tally.passes += 1
            if isinstance(finished, Pass) and finished.direction == self.expected.get(
                finished.epc_hex
            ):
                tally.right_direction += 1

    def finish(self) -> None:
        """The tags still in the field depart (time passes), then the rest is drained."""
        self._store(self.points.tick(self.now + self.departure_s + TICK_S))
        self._store(self.points.drain())


def remove_outbox(path: Path) -> None:
    """Delete an outbox file and its WAL, shared-memory and lock files."""
    remove_database(path, ".lock")


async def run_pipeline(stream: llrp_stream.Stream, workdir: Path) -> PipelineRun:
    """Replay ``stream`` through the pipeline into a new outbox file under ``workdir``.

    Timed: the measured part of the stream, from its first byte until its last read is
    tracked and every event stored meanwhile is committed. Not timed: the warm-up before
    it, and ending the passes still open after it (kept and counted all the same).
    """
    path = workdir / f"edge-outbox-{uuid.uuid4().hex[:8]}.db"
    settings = edge_settings(path)
    buffer = settings.buffer
    try:
        async with Outbox.open(
            path,
            GATEWAY,
            commit_interval_ms=buffer.commit_interval_ms,
            max_events=buffer.max_events,
        ) as outbox:
            replay = _Replay(settings, outbox, stream.expected_directions)
            tally = replay.tally
            outbox.on_commit(tally.committed)
            await replay.feed(stream.warmup)
            await outbox.flush()
            reads_before, passes_before, commits_before = tally.reads, tally.passes, tally.commits
            started = time.perf_counter()
            await replay.feed(stream.data)
            await outbox.flush()
            seconds = time.perf_counter() - started
            timed = (
                tally.reads - reads_before,
                tally.passes - passes_before,
                tally.commits - commits_before,
            )
            replay.finish()
            await outbox.flush()
            depth = outbox.depth()
    finally:
        remove_outbox(path)
    if timed[0] != stream.reads or tally.reads != stream.reads + stream.warmup_reads:
        raise RuntimeError(f"pipeline saw {tally.reads} reads, the stream holds more or fewer")
    filtered = sum(replay.points.filtered.values())
    if depth != tally.passes or tally.refused or tally.bad or tally.ignored or filtered:
        raise RuntimeError(
            f"outbox holds {depth} events of {tally.passes} passes stored "
            f"({tally.refused} refused, {tally.bad} bad, {tally.ignored} reads ignored, "
            f"{filtered} filtered)"
        )
    return PipelineRun(
        reads=timed[0],
        seconds=seconds,
        timed_passes=timed[1],
        passes=tally.passes,
        committed=depth,
        right_direction=tally.right_direction,
        max_tracked=tally.max_tracked,
        evicted=sum(getattr(tracker, "evicted", 0) for tracker in replay.points.trackers),
        commits=timed[2],
    )


def run_sllurp(stream: llrp_stream.Stream) -> float:
    """Seconds sllurp takes to decode every message of ``stream`` (nothing else)."""
    started = time.perf_counter()
    for raw in stream.frames:
        LLRPMessage(msgbytes=raw)
    return time.perf_counter() - started


def _run_summary(run: PipelineRun) -> dict[str, object]:
    return {
        "reads": run.reads,
        "seconds": round(run.seconds, 3),
        "reads_per_s": round(run.reads_per_s, 1),
        "passes_committed_while_timed": run.timed_passes,
        "passes_stored": run.passes,
        "events_committed": run.committed,
        "passes_with_expected_direction": run.right_direction,
        "max_tracked_tags": run.max_tracked,
        "evicted": run.evicted,
        "commits": run.commits,
    }


def throughput(
    reads: int,
    repeats: int,
    workdir: Path,
    *,
    crowded_field: int = CROWDED_FIELD,
    warmup_cycles: int = llrp_stream.WARMUP_CYCLES,
) -> list[Figure]:
    """``edge.reads_per_s``, ``edge.sllurp_decode_per_s`` and ``edge.reads_per_s_10k_tags``.

    The three measurements are interleaved ``repeats`` times on one core; each figure is the
    median of its runs, so a burst of load elsewhere on the machine moves all three alike.
    ``crowded_field`` and ``warmup_cycles`` are smaller only in smoke runs.
    """
    small = llrp_stream.build(reads, field_tags=100, warmup_cycles=warmup_cycles)
    large = llrp_stream.build(reads, field_tags=crowded_field, warmup_cycles=warmup_cycles)
    sllurp_rates: list[float] = []
    small_runs: list[PipelineRun] = []
    large_runs: list[PipelineRun] = []
    cpus: list[int | None] = []
    for _ in range(repeats):
        # Each measurement on the core that is idlest just before it (the machine may be
        # shared); the three kinds alternate so that load elsewhere moves them alike.
        with one_core() as cpu:
            sllurp_rates.append(small.reads / run_sllurp(small))
        with one_core() as cpu:
            small_runs.append(asyncio.run(run_pipeline(small, workdir)))
        with one_core() as cpu:
            large_runs.append(asyncio.run(run_pipeline(large, workdir)))
        cpus.append(cpu)
    pipeline = median([run.reads_per_s for run in small_runs])
    bare = median(sllurp_rates)
    crowded = median([run.reads_per_s for run in large_runs])
    stream_text = (
        f"{small.reads:,} reads in {len(small.frames):,} RO_ACCESS_REPORTs of 100 TagReportData "
        "(SGTIN-96 EPC, AntennaID, PeakRSSI, first/last seen, seen count), encoded once with "
        "firmware_sim's ReportEncoder, after an untimed warm-up of "
        f"{small.warmup_reads:,} reads that brings the tracker to its steady state"
    )
    pinned = (
        "one core (the idlest at the start of each run)" if cpus[0] is not None else ("one process")
    )
    pipeline_how = (
        f"{stream_text}; pallets of 100 tags through a 2-antenna dock door (100 tags in the "
        "field). Replayed from memory in 256 KiB reads through LlrpFramer, sllurp decode, "
        "tag_reads, the reader queue, ReadPoints (software filter: EPC prefix include + RSSI "
        "threshold; then the portal's PassTracker) and Outbox (SQLite file, WAL, "
        "synchronous=FULL, its own 200 ms/2,000-event flusher) until the last read was "
        "tracked and the events of all passes ended so far were committed; one asyncio loop "
        f"pinned to {pinned}; median of {repeats} runs."
    )
    return [
        Figure(
            key="edge.reads_per_s",
            value=round(pipeline, 1),
            unit="reads/s",
            how=pipeline_how,
            target=Target(">=", READS_TARGET),
            detail={
                "runs": [_run_summary(run) for run in small_runs],
                "ratio_to_sllurp_decode": round(pipeline / bare, 3),
                "distinct_tags": small.distinct_tags,
                "stream_bytes": len(small.data),
                "stream_reader_seconds": small.span_s,
            },
        ),
        Figure(
            key="edge.sllurp_decode_per_s",
            value=round(bare, 1),
            unit="reads/s",
            how=(
                "The same bytes, one LLRPMessage(msgbytes=...) per message and nothing else, "
                f"same core, interleaved with the pipeline runs; median of {repeats}. "
                f"Pipeline / bare sllurp = {pipeline / bare:.2f}."
            ),
            detail={
                "runs_reads_per_s": [round(rate, 1) for rate in sllurp_rates],
                "pipeline_ratio": round(pipeline / bare, 3),
            },
        ),
        Figure(
            key="edge.reads_per_s_10k_tags",
            value=round(crowded, 1),
            unit="reads/s",
            how=(
                f"As edge.reads_per_s with {crowded_field:,} distinct tags in the field "
                f"({crowded_field // 100} pallets "
                f"read in turn, each tag every 100 ms of reader time; {large.reads:,} reads "
                f"after a {large.warmup_reads:,}-read warm-up; the tracker holds the field plus "
                "the tags departing). "
                f"Target: within {TEN_K_TOLERANCE:.0%} of edge.reads_per_s; ratio "
                f"{crowded / pipeline:.2f}."
            ),
            target=Target(">=", round(pipeline * (1 - TEN_K_TOLERANCE), 1)),
            detail={
                "runs": [_run_summary(run) for run in large_runs],
                "ratio_to_edge_reads_per_s": round(crowded / pipeline, 3),
                "distinct_tags": large.distinct_tags,
            },
        ),
    ]


def profile(stream_reads: int, field_tags: int, workdir: Path, out: Path) -> Path:
    """cProfile one pipeline run (untimed) and write its top entries to ``out``."""
    stream = llrp_stream.build(stream_reads, field_tags=field_tags)
    profiler = cProfile.Profile()
    with one_core():
        profiler.enable()
        run = asyncio.run(run_pipeline(stream, workdir))
        profiler.disable()
    return write_text(
        profiler,
        out,
        f"edge pipeline, {field_tags:,} tags in the field",
        f"One run of {run.reads:,} reads under cProfile ({run.reads_per_s:,.0f} reads/s with the "
        "profiler on; the profiler slows small functions most). Main thread only: the outbox's "
        "SQLite work runs on aiosqlite's thread.",
    )
