"""Typed values that leave the reader boundary. No library dict crosses it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

from wire.barcodes import Scan


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
class ReaderEvent:
    """Something about the reader itself: connection changes, antenna events, errors."""

    reader: str
    kind: Literal["state", "antenna", "exception", "decode_error", "gpi"]
    state: ReaderState | None = None
    detail: str = ""
    antenna: int | None = None
    connected: bool | None = None
    gpi_port: int | None = None
    """For ``gpi`` events: the input that changed."""
    gpi_high: bool | None = None
    """For ``gpi`` events: its new level (True: high, e.g. a photo-eye blocked)."""
    at_us: int | None = None
    """When the reader says it happened (µs since the Unix epoch), if it said."""


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
