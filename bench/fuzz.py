"""Mutated LLRP frames and serial scan lines through the edge's own input path.

A seeded mutator (``Mutator``: bit flips, interesting values in length and type fields,
inserted, deleted, duplicated and spliced ranges, truncation) turns real inputs (the
recorded reader captures, simulator-encoded reports, valid GS1 scan lines) into hostile
ones. Each goes through what the edge does with bytes from a reader or a scanner:

- LLRP: ``LlrpFramer.feed`` (whole, or cut into random pieces), ``decode`` with sllurp,
  then the conversion the reader applies to the message (``tag_reads``, ``notification``,
  ``check_status``, ``capabilities``);
- serial: ``LineFramer.feed`` in random pieces, then ``parse_scan``.

Only the errors the edge handles are allowed (the ones ``edge.readers.llrp`` and
``edge.readers.serial_scanner`` catch); any other exception is a crash and is recorded
with its seed and input number, so it can be replayed. An input still running after
``HANG_S`` is stopped by an alarm and recorded as a hang. Time per input and memory are
measured: the slowest input, the growth of the peak resident set after a warm-up and (in
the small runs of the tests) of traced memory.

``python -m bench --only fuzz`` runs a million of each kind, spread over the machine's
cores by ``fuzz_parallel`` (``make bench``); the test suite runs a few thousand with the
same code (``tests/edge/readers/test_fuzz_inputs.py``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import resource
import signal
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from edge.config import ScannerSettings
from edge.readers.barcode import LineFramer, MalformedScan, Overlong, parse_scan
from edge.readers.llrp_codec import (
    MAX_FRAME,
    LlrpDecodeError,
    LlrpFramer,
    LlrpFramingError,
    decode,
)
from edge.readers.llrp_reports import (
    LlrpError,
    capabilities,
    check_status,
    notification,
    tag_reads,
)
from firmware_sim.llrp_types import ContentSelector, TagReportEntry
from firmware_sim.report_encoder import ReportEncoder

CAPTURES: Final = Path(__file__).resolve().parents[1] / "tests" / "data" / "llrp-captures.json"
INTERESTING_16: Final = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x3FF, 0x400, 0x7FFF, 0x8000, 0xFFFF)
INTERESTING_32: Final = (0, 1, 9, 10, 0xFFFF, 0x10000, MAX_FRAME, MAX_FRAME + 1, 0x7FFFFFFF)
MAX_INPUT: Final = 64 * 1024
"""Largest mutated input (the mutator never grows an input past it)."""
HANDLED_CONVERSION_ERRORS: Final = (LlrpError,)
"""What the reader handles after sllurp has decoded a frame: a refused status, or a body of a
shape it does not expect (``LlrpReportError``, an undecodable frame). Anything else escaping
the conversions would end the reader's connection, so it counts as a crash."""
NOW_US: Final = 1_700_000_000_000_000
HANG_S: Final = 10.0
"""An input still running after this long is a hang (most take well under 10 ms)."""
WARMUP_SHARE: Final = 0.01
"""Share of a run's inputs after which its memory baseline is taken (imports, caches and
the framers' buffers have grown to their working size by then)."""


class Mutator:
    """Seeded byte mutations of a corpus of valid inputs."""

    def __init__(self, corpus: Sequence[bytes], seed: int) -> None:
        if not corpus:
            raise ValueError("the corpus is empty")
        self._corpus = list(corpus)
        self._rng = random.Random(seed)

    def next(self) -> tuple[int, bytes]:
        """A mutated input and the index of the corpus entry it came from."""
        rng = self._rng
        index = rng.randrange(len(self._corpus))
        data = bytearray(self._corpus[index])
        for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
            self._mutate(data)
        return index, bytes(data[:MAX_INPUT])

    def _mutate(self, data: bytearray) -> None:
        rng = self._rng
        size = len(data)
        op = rng.randrange(9)
        if size == 0 or op == 0:
            data[rng.randint(0, size) : rng.randint(0, size)] = rng.randbytes(rng.randint(1, 16))
        elif op == 1:
            spot = rng.randrange(size)
            data[spot] ^= 1 << rng.randrange(8)
        elif op == 2:
            data[rng.randrange(size)] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x0A, 0x0D))
        elif op == 3 and size >= 2:
            spot = rng.randrange(size - 1)
            struct.pack_into("!H", data, spot, rng.choice(INTERESTING_16))
        elif op == 4 and size >= 4:
            spot = rng.randrange(size - 3)
            struct.pack_into("!I", data, spot, rng.choice(INTERESTING_32))
        elif op == 5:
            start = rng.randrange(size)
            del data[start : start + rng.randint(1, 64)]
        elif op == 6:
            start = rng.randrange(size)
            chunk = data[start : start + rng.randint(1, 256)]
            data[start:start] = chunk * rng.randint(1, 4)
        elif op == 7:
            del data[rng.randrange(size) :]
        else:
            other = self._corpus[rng.randrange(len(self._corpus))]
            cut = rng.randint(0, len(other))
            data[rng.randrange(size) :] = other[cut:]


@dataclass
class FuzzResult:
    """What one run found (one process's run, or the sum of several: ``add``)."""

    inputs: int = 0
    frames: int = 0
    """Whole frames (LLRP) or lines (serial) the framer produced."""
    handled: int = 0
    """Inputs that ended in an error the edge handles (bad frame, bad line)."""
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    """Inputs stopped after ``hang_s`` (only counted where a hang bound was set)."""
    slowest_s: float = 0.0
    seconds: float = 0.0
    """Wall time of the run (of the longest process when several ran side by side)."""
    traced_growth_bytes: int | None = None
    """Traced memory at the end minus at the start (the framers' state included); only
    when traced (``trace_memory``: it makes the run about four times slower)."""
    rss_growth_bytes: int = 0
    """Growth of the process's resident set from the end of the warm-up (the first
    ``WARMUP_SHARE`` of the inputs) to the end; the largest of the processes."""
    peak_rss_bytes: int = 0
    processes: int = 1

    def add(self, other: FuzzResult) -> None:
        """Fold in the result of another process that ran at the same time."""
        self.inputs += other.inputs
        self.frames += other.frames
        self.handled += other.handled
        self.crashes += other.crashes
        self.hangs += other.hangs
        self.slowest_s = max(self.slowest_s, other.slowest_s)
        self.seconds = max(self.seconds, other.seconds)
        if other.traced_growth_bytes is not None:
            self.traced_growth_bytes = max(self.traced_growth_bytes or 0, other.traced_growth_bytes)
        if self.processes == 0:
            self.rss_growth_bytes = other.rss_growth_bytes
        else:
            self.rss_growth_bytes = max(self.rss_growth_bytes, other.rss_growth_bytes)
        self.peak_rss_bytes = max(self.peak_rss_bytes, other.peak_rss_bytes)


def llrp_corpus() -> list[bytes]:
    """The recorded captures and a few simulator-encoded reports (valid LLRP messages)."""
    corpus = [bytes.fromhex(entry["hex"]) for entry in json.loads(CAPTURES.read_text())]
    encoder = ReportEncoder(
        ContentSelector(
            antenna_id=True, peak_rssi=True, first_seen=True, last_seen=True, tag_seen_count=True
        )
    )
    for tags in (1, 3, 20):
        entries = [
            TagReportEntry(f"3074257bf7194e4000001a{serial:02x}", 1 + serial % 2, -55, 1, 2, 3)
            for serial in range(tags)
        ]
        corpus.append(encoder.encode(tags, entries))
    return corpus


SCAN_LINES: Final = (
    b"]C1010061414112345617261231108ABC123\r\n",
    b"]C1010061414199999810LOT-7\x1d2112345\r\n",
    b"]E00614141123452\r\n",
    b"LOC:wh1.a02.b01\r\n",
    b"CMD:COUNT\r\n",
    b"CMD:END\r\n",
    b"]Q3(01)00614141123452(10)AB12\r\n",
    b"\x02]C101006141411234561512\x03\r\n",
)


def _one_llrp(data: bytes, rng: random.Random) -> tuple[int, bool]:
    """Feed one input as one connection's stream; returns (frames, handled error seen)."""
    framer = LlrpFramer()
    frames, handled = 0, False
    cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1))) if len(data) > 1 else []
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    for piece in pieces:
        try:
            found = list(framer.feed(piece))
        except LlrpFramingError:
            return frames, True  # the reader drops the connection
        assert framer.buffered <= MAX_FRAME
        for frame in found:
            frames += 1
            try:
                decoded = decode(frame)
            except LlrpDecodeError:
                handled = True
                continue
            try:
                if decoded.name == "RO_ACCESS_REPORT":
                    tag_reads("fuzz", decoded.body, NOW_US)
                elif decoded.name == "READER_EVENT_NOTIFICATION":
                    notification("fuzz", decoded.body)
                elif decoded.name == "GET_READER_CAPABILITIES_RESPONSE":
                    check_status(decoded.name, decoded.body)
                    capabilities(decoded.body)
                elif decoded.name.endswith("_RESPONSE") or decoded.name == "ERROR_MESSAGE":
                    check_status(decoded.name, decoded.body)
            except HANDLED_CONVERSION_ERRORS:
                handled = True
    return frames, handled


def _one_serial(
    data: bytes, rng: random.Random, framer: LineFramer, settings: ScannerSettings
) -> tuple[int, bool]:
    lines, handled = 0, False
    cut = rng.randint(0, len(data))
    for piece in (data[:cut], data[cut:]):
        for line in framer.feed(piece):
            lines += 1
            if isinstance(line, Overlong):
                handled = True
                continue
            try:
                parse_scan(line, settings)
            except MalformedScan:
                handled = True
    return lines, handled


class _Hang(BaseException):
    """Raised by the hang alarm inside a step (a BaseException: no ``except Exception``
    in the code under test can swallow it)."""


def _on_alarm(_signum: int, _frame: object) -> None:
    raise _Hang


def _peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux (bytes on macOS; this bench runs on Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_bytes() -> int:
    """The resident set now (Linux ``/proc``); elsewhere the peak, which only grows."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return _peak_rss_bytes()


def run_mutated(
    count: int,
    seed: int,
    corpus: Sequence[bytes],
    step: Callable[[bytes, random.Random], tuple[int, bool]],
    deadline_s: float | None,
    *,
    trace_memory: bool = True,
    hang_s: float | None = None,
) -> FuzzResult:
    """``count`` mutations of ``corpus`` (seeded with ``seed``), each fed to ``step``.

    ``step`` returns the frames or lines it got out of an input and whether the edge
    refused any of them; any exception is a crash. With ``hang_s`` (main thread only) an
    input still running after that long is stopped by an alarm and counted as a hang.
    The run stops early after ``deadline_s``.
    """
    mutator = Mutator(corpus, seed)
    rng = random.Random(seed + 1)
    result = FuzzResult()
    # sllurp logs every message it cannot parse; here that is nearly every input.
    sllurp_log = logging.getLogger("sllurp")
    level = sllurp_log.level
    sllurp_log.setLevel(logging.CRITICAL)
    tracing = trace_memory and tracemalloc.is_tracing()
    if trace_memory and not tracing:
        tracemalloc.start()
    began_memory = tracemalloc.get_traced_memory()[0] if trace_memory else 0
    # The hang alarm needs the main thread (signals are delivered there).
    alarm = hang_s is not None and threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGALRM, _on_alarm) if alarm else None
    warmup = max(1, int(count * WARMUP_SHARE))
    rss_after_warmup = _rss_bytes()
    began = time.perf_counter()
    try:
        for number in range(count):
            index, data = mutator.next()
            started = time.perf_counter()
            try:
                if alarm:
                    signal.setitimer(signal.ITIMER_REAL, hang_s or 0.0)
                try:
                    frames, handled = step(data, rng)
                finally:
                    if alarm:
                        signal.setitimer(signal.ITIMER_REAL, 0.0)
            except _Hang:
                result.hangs.append(f"seed {seed}, input {number} (corpus entry {index})")
                frames, handled = 0, False
            except Exception as err:
                result.crashes.append(
                    f"seed {seed}, input {number} (corpus entry {index}): {err!r}"
                )
                frames, handled = 0, False
            took = time.perf_counter() - started
            result.slowest_s = max(result.slowest_s, took)
            result.inputs += 1
            result.frames += frames
            result.handled += handled
            if number + 1 == warmup:
                rss_after_warmup = _rss_bytes()
            if deadline_s is not None and time.perf_counter() - began > deadline_s:
                break
        if trace_memory:
            result.traced_growth_bytes = tracemalloc.get_traced_memory()[0] - began_memory
    finally:
        sllurp_log.setLevel(level)
        if trace_memory and not tracing:
            tracemalloc.stop()
        if previous_handler is not None:
            signal.signal(signal.SIGALRM, previous_handler)
    result.seconds = time.perf_counter() - began
    result.peak_rss_bytes = _peak_rss_bytes()
    result.rss_growth_bytes = _rss_bytes() - rss_after_warmup
    return result


def fuzz_llrp(
    count: int,
    seed: int = 1,
    deadline_s: float | None = None,
    *,
    trace_memory: bool = True,
    hang_s: float | None = None,
) -> FuzzResult:
    """``count`` mutated LLRP inputs through framer, decoder and conversions."""
    return run_mutated(
        count, seed, llrp_corpus(), _one_llrp, deadline_s, trace_memory=trace_memory, hang_s=hang_s
    )


def fuzz_serial(
    count: int,
    seed: int = 1,
    deadline_s: float | None = None,
    *,
    trace_memory: bool = True,
    hang_s: float | None = None,
) -> FuzzResult:
    """``count`` mutated scanner inputs through the line framer and the scan parser."""
    settings = ScannerSettings(name="fuzz", port="/dev/null", read_point="wh1.aisle.1")
    framer = LineFramer()

    def step(data: bytes, rng: random.Random) -> tuple[int, bool]:
        return _one_serial(data, rng, framer, settings)

    return run_mutated(
        count, seed, SCAN_LINES, step, deadline_s, trace_memory=trace_memory, hang_s=hang_s
    )


KINDS: Final[Mapping[str, Callable[..., FuzzResult]]] = {
    "llrp": fuzz_llrp,
    "serial": fuzz_serial,
}


def _shard(kind: str, count: int, seed: int, deadline_s: float | None, hang_s: float) -> FuzzResult:
    """One process's share of a parallel run (a top-level function: pickled by name)."""
    return KINDS[kind](count, seed, deadline_s, trace_memory=False, hang_s=hang_s)


def fuzz_parallel(
    kind: str,
    count: int,
    seed: int,
    *,
    processes: int,
    deadline_s: float | None = None,
    hang_s: float = HANG_S,
) -> FuzzResult:
    """``count`` inputs of ``kind`` (``llrp`` or ``serial``) over ``processes`` processes.

    Process ``n`` runs its share with seed ``seed * 1000 + n``, so each share replays on
    its own (``fuzz_llrp(share, seed * 1000 + n)``). Memory is the processes' peak resident
    set (traced memory would make the run four times slower); each input is stopped after
    ``hang_s`` and counted as a hang.

    Raises:
        ValueError: an unknown kind or a count or process number below 1.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown fuzz kind {kind!r}; one of {', '.join(KINDS)}")
    if count < 1 or processes < 1:
        raise ValueError(f"count and processes must be at least 1, got {count}, {processes}")
    shares = [count // processes + (n < count % processes) for n in range(processes)]
    total = FuzzResult(processes=0)
    # spawn: the bench process has threads (fork would copy their locks mid-use).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        futures = [
            pool.submit(_shard, kind, share, seed * 1000 + n, deadline_s, hang_s)
            for n, share in enumerate(shares)
            if share
        ]
        for future in futures:
            total.add(future.result())
            total.processes += 1
    return total
