"""Sans-I/O barcode scanner codec: bounded line framing and scan parsing.

``LineFramer`` takes bytes as they come off the tty and returns whole lines. It holds at
most ``max_line`` bytes of a line: a longer one is skipped up to its terminator and
returned as an ``Overlong`` (its first bytes and its length) so it can be reported, and
the lines after it are framed as if nothing had happened. A new framer is made for every
connection, so half a line from before an unplug is never glued to the next scan.

``parse_scan`` turns one line into a typed scan with the scanner's settings: control
characters other than GS (FNC1) are stripped, the configured prefix and suffix removed,
then ``wire.barcodes.parse_barcode`` reads the symbology identifier and the content. Any
problem raises ``MalformedScan``, which carries the reason and the line's bytes.

Nothing here reads a clock or a file; the scanner loop in ``serial_scanner`` drives it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from edge.config import ScannerSettings
from edge.errors import ReaderError
from wire.barcodes import ANY_TERMINATORS, MAX_LINE, parse_barcode
from wire.gs1 import GS
from wire.scans import BarcodeError, CommandScan, ItemScan, LocationScan, Scan

__all__ = [
    "MAX_LINE",
    "MAX_SHOWN",
    "CommandScan",
    "ItemScan",
    "LineFramer",
    "LocationScan",
    "MalformedScan",
    "Overlong",
    "Scan",
    "parse_scan",
    "show",
    "strip_controls",
]

OVERLONG_HEAD: Final = 32
"""Bytes of an over-long line kept to show in its report."""
MAX_SHOWN: Final = 80
"""Bytes of a line shown in a report or a log line; the rest is elided."""

_CONTROL: Final = bytes(b for b in (*range(0x20), 0x7F) if b != ord(GS))


def strip_controls(data: bytes) -> bytes:
    """``data`` without ASCII control characters, except GS (FNC1 in GS1 strings)."""
    return data.translate(None, _CONTROL)


def show(data: bytes, limit: int = MAX_SHOWN) -> str:
    """``repr`` of at most ``limit`` bytes of ``data``, marking what was cut."""
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r}... ({len(data)} bytes)"


class MalformedScan(ReaderError):
    """A line that is not a scan: the reason names what was wrong, ``data`` is the bytes."""

    def __init__(self, reason: str, data: bytes) -> None:
        super().__init__(f"{reason}: {show(data)}")
        self.reason = reason
        self.data = data


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line longer than the framer's bound, skipped up to its terminator."""

    head: bytes
    """The first ``OVERLONG_HEAD`` bytes."""
    length: int
    """Its whole length in bytes (terminator excluded)."""
    limit: int

    def error(self) -> MalformedScan:
        """The report of this line as a malformed scan."""
        return MalformedScan(
            f"line of {self.length} bytes exceeds the {self.limit}-byte limit", self.head
        )


Frame = bytes | Overlong


class LineFramer:
    """Splits a byte stream into lines of at most ``max_line`` bytes.

    Args:
        terminator: what ends a line; ``None`` accepts CR, LF and CRLF (an empty line
            between CR and LF is not returned). A terminator of several control characters
            ends a line at its last one, and the others are removed from the line's end,
            so a lone LF still ends a line when CRLF is expected.
        max_line: longest line kept, terminator excluded.

    Raises:
        ValueError: an empty terminator or a ``max_line`` below 1.
    """

    def __init__(self, terminator: bytes | None = None, max_line: int = MAX_LINE) -> None:
        if terminator is not None and not terminator:
            raise ValueError("a terminator must not be empty")
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        ends = ANY_TERMINATORS if terminator is None else (terminator[-1:],)
        self._end = re.compile(b"|".join(re.escape(end) for end in ends))
        self._rest = b"" if terminator is None else terminator[:-1]
        # The rest of a multi-byte terminator sits in the line until the end is seen.
        self._limit = max_line + len(self._rest)
        self.max_line = max_line
        self._line = bytearray()
        self._skipped: int | None = None
        """Bytes of the over-long line being skipped; None while not skipping."""
        self._head = b""
        self._tail = b""
        """The last bytes of the line being skipped, to tell a terminator's rest from data."""

    @property
    def pending(self) -> bool:
        """Part of a line is held (or being skipped), waiting for its terminator."""
        return bool(self._line) or self._skipped is not None

    def feed(self, data: bytes) -> list[Frame]:
        """The lines completed by ``data``, in order."""
        frames: list[Frame] = []
        start = 0
        size = len(data)
        while start < size:
            end = self._find(data, start)
            if end < 0:
                self._take(data[start:])
                break
            self._take(data[start:end])
            frame = self._finish()
            if frame is not None:
                frames.append(frame)
            start = end + 1
        return frames

    def discard(self) -> Frame | None:
        """Drop the partial line held (a cut-off scan) and return it for reporting."""
        return self._finish()

    def _find(self, data: bytes, start: int) -> int:
        found = self._end.search(data, start)
        return found.start() if found is not None else -1

    def _take(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._skipped is not None:
            self._skipped += len(chunk)
        else:
            line = self._line
            if len(line) + len(chunk) <= self._limit:
                line += chunk
                return
            self._head = bytes((line + chunk)[:OVERLONG_HEAD])
            self._skipped = len(line) + len(chunk)
            line.clear()
        if self._rest:
            self._tail = (self._tail + chunk)[-len(self._rest) :]

    def _finish(self) -> Frame | None:
        if self._skipped is not None:
            length = self._skipped
            if self._rest and self._tail == self._rest:
                length -= len(self._rest)
            frame: Frame = Overlong(self._head[:length], length, self.max_line)
            self._skipped, self._head, self._tail = None, b"", b""
            return frame
        if not self._line:
            return None
        line = bytes(self._line)
        self._line.clear()
        if self._rest and line.endswith(self._rest):
            line = line[: -len(self._rest)]
        if len(line) > self.max_line:
            return Overlong(line[:OVERLONG_HEAD], len(line), self.max_line)
        return line


def parse_scan(line: bytes, settings: ScannerSettings) -> Scan:
    """The typed scan of one line from the scanner ``settings`` describe.

    Raises:
        MalformedScan: the line is only control characters, not ASCII, lacks the
            configured prefix or suffix, or is not a valid label, command or item.
    """
    text = strip_controls(line)
    if not text:
        raise MalformedScan("only control characters", line)
    try:
        scan = text.decode("ascii")
    except UnicodeDecodeError as err:
        raise MalformedScan(
            f"non-ASCII byte 0x{text[err.start]:02x} at position {err.start}", line
        ) from None
    prefix = _clean(settings.prefix)
    suffix = _clean(settings.suffix)
    if prefix:
        if not scan.startswith(prefix):
            raise MalformedScan(f"missing the prefix {prefix!r}", line)
        scan = scan[len(prefix) :]
    if suffix:
        if not scan.endswith(suffix):
            raise MalformedScan(f"missing the suffix {suffix!r}", line)
        scan = scan[: -len(suffix)]
    try:
        return parse_barcode(
            scan,
            symbology_ids=settings.symbology_ids,
            location_prefix=settings.location_prefix,
            command_prefix=settings.command_prefix,
        )
    except BarcodeError as err:
        raise MalformedScan(err.reason, line) from err


def _clean(text: str) -> str:
    # Settings are ASCII (checked at start-up); their control characters go like the line's.
    return strip_controls(text.encode("ascii")).decode("ascii")
