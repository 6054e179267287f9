"""Typed values that leave the reader boundary. No library dict crosses it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar

from wire.scans import Scan


@dataclass(frozen=True, slots=True)
class TagRead:
    """One tag report entry from an RFID reader.

    Timestamps are microseconds since the Unix epoch, as LLRP carries them; when the
    reader did not send one, the adapter fills in its own receive time.
    """

    reader: str
    epc_hex: str
    """The EPC bank contents as lowercase hex, any length."""
    antenna: int
    rssi: float | None
    first_seen_us: int
    last_seen_us: int
    seen_count: int = 1


ReaderState = Literal["connecting", "connected", "disconnected", "error"]


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The reader's connection changed state (``detail`` says why or where)."""

    reader: str
    state: ReaderState
    detail: str = ""
    kind: ClassVar[str] = "state"


@dataclass(frozen=True, slots=True)
class AntennaChanged:
    """An antenna was connected or disconnected (the reader's AntennaEvent)."""

    reader: str
    antenna: int
    connected: bool
    detail: str = ""
    kind: ClassVar[str] = "antenna"


@dataclass(frozen=True, slots=True)
class ReaderFault:
    """The reader reported trouble (an exception event, a report buffer filling up) or the
    adapter met a problem it keeps running through."""

    reader: str
    detail: str
    kind: ClassVar[str] = "exception"


@dataclass(frozen=True, slots=True)
class DecodeFailed:
    """Input that could not be decoded (an LLRP message, a scanner line); dropped."""

    reader: str
    detail: str
    kind: ClassVar[str] = "decode_error"


@dataclass(frozen=True, slots=True)
class GpiChanged:
    """A GPI input changed level (e.g. a photo-eye blocked: high)."""

    reader: str
    port: int
    high: bool
    detail: str = ""
    kind: ClassVar[str] = "gpi"


ReaderEvent = StateChanged | AntennaChanged | ReaderFault | DecodeFailed | GpiChanged
"""Something about the reader itself, not a read. Each kind is its own type (match on
it); ``kind`` is a short label for logs and counters."""


@dataclass(frozen=True, slots=True)
class ScanRead:
    """One well-formed scan from a barcode scanner (malformed ones are ReaderEvents)."""

    reader: str
    """The scanner's name."""
    scan: Scan
    raw: bytes
    """The line as received, terminator removed (for logs and evidence)."""
    seen_us: int
    """Host wall-clock time the line completed, microseconds since the Unix epoch."""


ReaderOutput = TagRead | ReaderEvent
ScannerOutput = ScanRead | ReaderEvent


T = TypeVar("T")


class _End:
    """Queued when a reader stops, to wake an iterator waiting on an empty queue."""


_END: Final = _End()


class OutputQueue(asyncio.Queue[T | _End], Generic[T]):
    """A reader's bounded output. ``put`` waits while it is full (back-pressure up to the
    device); ``close`` queues a last item and the end, and ``next`` ends once drained."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.closed = False

    def close(self, last: T) -> None:
        """No more output after ``last`` (both are dropped if the queue is full)."""
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self.put_nowait(last)
            self.put_nowait(_END)

    async def next(self) -> T:
        """The next item.

        Raises:
            StopAsyncIteration: the reader was closed and everything was read.
        """
        if self.closed and self.empty():
            raise StopAsyncIteration
        item = await self.get()
        if isinstance(item, _End):
            # Leave it for any other iterator waiting on the same reader.
            with contextlib.suppress(asyncio.QueueFull):
                self.put_nowait(item)
            raise StopAsyncIteration
        return item


class DeviceLog(logging.LoggerAdapter[logging.Logger]):
    """Puts ``{kind} {name}:`` in front of every message and the name into ``record.reader``.

    ``DeviceLog(logger, "reader", "dock1")``: every line of a reader or scanner names it.
    """

    def __init__(self, logger: logging.Logger, kind: str, name: str) -> None:
        super().__init__(logger, {"reader": name})
        self._name = name
        self._prefix = f"{kind} {name}: "

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "reader": self._name}
        return f"{self._prefix}{msg}", kwargs
