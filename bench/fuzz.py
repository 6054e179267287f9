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
with the seed input's index, so it can be replayed. Time per input and memory are
measured: the slowest input (a hang would show here; the run is bounded in count and
the caller bounds it in time) and the growth of traced memory over the run.

``python -m bench --only fuzz`` runs a million of each (``make bench``); the test suite
runs a smaller count with the same code (``tests/edge/readers/test_fuzz_inputs.py``).
"""

from __future__ import annotations

import json
import logging
import random
import struct
import time
import tracemalloc
from collections.abc import Callable, Sequence
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
from firmware_sim.llrp_encode import ContentSelector, ReportEncoder, TagReportEntry

CAPTURES: Final = Path(__file__).resolve().parents[1] / "tests" / "data" / "llrp-captures.json"
INTERESTING_16: Final = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x3FF, 0x400, 0x7FFF, 0x8000, 0xFFFF)
INTERESTING_32: Final = (0, 1, 9, 10, 0xFFFF, 0x10000, MAX_FRAME, MAX_FRAME + 1, 0x7FFFFFFF)
MAX_INPUT: Final = 64 * 1024
"""Largest mutated input (the mutator never grows an input past it)."""
HANDLED_CONVERSION_ERRORS: Final = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    UnicodeDecodeError,
    LlrpError,
)
"""What the reader treats as an undecodable frame after sllurp has decoded it."""
NOW_US: Final = 1_700_000_000_000_000


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
    """What one run found."""

    inputs: int = 0
    frames: int = 0
    """Whole frames (LLRP) or lines (serial) the framer produced."""
    handled: int = 0
    """Inputs that ended in an error the edge handles (bad frame, bad line)."""
    crashes: list[str] = field(default_factory=list)
    slowest_s: float = 0.0
    seconds: float = 0.0
    traced_growth_bytes: int = 0
    """Traced memory at the end minus at the start (the framers' state included)."""


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


def _run(
    count: int,
    seed: int,
    corpus: Sequence[bytes],
    step: Callable[[bytes, random.Random], tuple[int, bool]],
    deadline_s: float | None,
) -> FuzzResult:
    mutator = Mutator(corpus, seed)
    rng = random.Random(seed + 1)
    result = FuzzResult()
    # sllurp logs every message it cannot parse; here that is nearly every input.
    sllurp_log = logging.getLogger("sllurp")
    level = sllurp_log.level
    sllurp_log.setLevel(logging.CRITICAL)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    began_memory = tracemalloc.get_traced_memory()[0]
    began = time.perf_counter()
    try:
        for _ in range(count):
            index, data = mutator.next()
            started = time.perf_counter()
            try:
                frames, handled = step(data, rng)
            except Exception as err:
                result.crashes.append(f"input from corpus entry {index}: {err!r}")
                frames, handled = 0, False
            took = time.perf_counter() - started
            result.slowest_s = max(result.slowest_s, took)
            result.inputs += 1
            result.frames += frames
            result.handled += handled
            if deadline_s is not None and time.perf_counter() - began > deadline_s:
                break
        result.traced_growth_bytes = tracemalloc.get_traced_memory()[0] - began_memory
    finally:
        sllurp_log.setLevel(level)
        if not tracing:
            tracemalloc.stop()
    result.seconds = time.perf_counter() - began
    return result


def fuzz_llrp(count: int, seed: int = 1, deadline_s: float | None = None) -> FuzzResult:
    """``count`` mutated LLRP inputs through framer, decoder and conversions."""
    return _run(count, seed, llrp_corpus(), _one_llrp, deadline_s)


def fuzz_serial(count: int, seed: int = 1, deadline_s: float | None = None) -> FuzzResult:
    """``count`` mutated scanner inputs through the line framer and the scan parser."""
    settings = ScannerSettings(name="fuzz", port="/dev/null", read_point="wh1.aisle.1")
    framer = LineFramer()

    def step(data: bytes, rng: random.Random) -> tuple[int, bool]:
        return _one_serial(data, rng, framer, settings)

    return _run(count, seed, SCAN_LINES, step, deadline_s)
