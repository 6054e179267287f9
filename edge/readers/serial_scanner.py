"""A serial barcode scanner on a tty: pyserial opens it, the asyncio loop reads it.

One task per scanner owns the port: open it, read until it fails, wait (capped exponential
backoff with jitter) and open it again, forever. Unplugging a USB scanner makes the tty
report a hang-up (EIO, or readable with no data); the task closes the port, reports the
scanner ``disconnected`` and keeps trying the configured path, so a scanner plugged back
is read again without a restart. While the path is missing the retries are quiet: only
changes of state are logged.

The port is opened non-blocking and watched with ``loop.add_reader``: no thread, no
polling. Each connection gets a new ``LineFramer``. Every line becomes a ``ScanRead`` or,
when it is not a scan, a ``DecodeFailed`` event naming the reason and the
bytes, plus a log line naming the scanner (the first ``MALFORMED_LOGGED`` per connection,
then every 100th). A partial line that stays quiet for ``line_timeout_s``, or that a
disconnect cuts off, is reported the same way and dropped. Nothing a scanner sends stops
the loop.

Outputs leave through a bounded queue; when it is full the read loop waits and the tty
buffer holds the scans (a scanner sends a few lines a second at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from types import TracebackType
from typing import Final

import serial

from edge.config import ScannerSettings
from edge.errors import ReaderError
from edge.rates import RateMeter
from edge.readers.barcode import LineFramer, MalformedScan, Overlong, parse_scan, show
from edge.readers.types import (
    DecodeFailed,
    DeviceLog,
    OutputQueue,
    ReaderEvent,
    ReaderState,
    ScannerOutput,
    ScanRead,
    StateChanged,
)
from plumbing.backoff import Backoff
from wire.models import ReaderStatus

__all__ = [
    "ScannerDisconnected",
    "ScannerError",
    "ScannerUnavailable",
    "SerialScanner",
]

logger = logging.getLogger(__name__)

READ_CHUNK: Final = 4096
MALFORMED_LOGGED: Final = 10
"""Malformed lines logged one by one per connection; after that every 100th is."""
MAX_ERROR_TEXT: Final = 1000


class ScannerError(ReaderError):
    """Base of the scanner's errors."""


class ScannerUnavailable(ScannerError):
    """The port cannot be opened: missing (unplugged), busy or not permitted."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


class ScannerDisconnected(ScannerError):
    """The open port failed: the scanner was unplugged or the tty hung up."""


class SerialScanner:
    """A barcode scanner on a serial port: an async context manager and iterator of scans.

    ``async with SerialScanner(settings) as scanner:`` starts the task that opens and reads
    the port; ``async for item in scanner`` yields ``ScanRead`` and ``ReaderEvent`` values
    until the scanner is stopped.

    Args:
        settings: the scanner's ``[[scanners]]`` table.
        queue_size: outputs held for the consumer before the read loop waits.
    """

    def __init__(self, settings: ScannerSettings, *, queue_size: int = 1000) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._settings = settings
        self.name = settings.name
        self._queue: OutputQueue[ScannerOutput] = OutputQueue(queue_size)
        self._log = DeviceLog(logger, "scanner", settings.name)
        self._state: ReaderState = "disconnected"
        self._last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._malformed_here = 0
        self._rate = RateMeter(time.monotonic())
        self.scans = 0
        """Well-formed scans read since the start."""
        self.malformed = 0
        """Lines reported as malformed since the start."""

    # --- public interface -----------------------------------------------------------

    async def __aenter__(self) -> SerialScanner:
        if self._task is not None:
            raise RuntimeError(f"scanner {self.name} was already started")
        self._task = asyncio.create_task(self._run(), name=f"scanner-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                self._log.error("port task ended with %r", task.exception())
        self._state = "disconnected"
        self._queue.close(StateChanged(self.name, "disconnected", detail="stopped"))

    def __aiter__(self) -> SerialScanner:
        return self

    async def __anext__(self) -> ScannerOutput:
        return await self._queue.next()

    @property
    def state(self) -> ReaderState:
        return self._state

    def status(self) -> ReaderStatus:
        """The scanner's state, last error and scans per second since the last call."""
        return ReaderStatus(
            name=self.name,
            kind="serial",
            state=self._state,
            last_error=self._last_error,
            reads_per_s=round(self._rate.rate(self.scans, time.monotonic()), 3),
        )

    # --- port loop -------------------------------------------------------------------

    async def _run(self) -> None:
        settings = self._settings
        backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        await self._set_state("connecting", settings.port)
        while True:
            try:
                port = self._open()
            except ScannerUnavailable as err:
                await self._set_state("disconnected" if err.missing else "error", str(err))
            else:
                backoff.reset()
                try:
                    await self._set_state("connected", settings.port)
                    await self._session(port)
                except ScannerDisconnected as err:
                    await self._set_state("disconnected", str(err))
                except Exception as err:  # noqa: BLE001
                    # A scanner must never go quiet for good: a bug met on one connection
                    # is logged with its traceback and the port is opened again.
                    self._log.exception("unexpected error reading the port")
                    await self._set_state("error", f"internal error: {err!r}")
                finally:
                    with contextlib.suppress(OSError, serial.SerialException):
                        port.close()
            await asyncio.sleep(backoff.next_delay())

    def _open(self) -> serial.Serial:
        settings = self._settings
        try:
            return serial.Serial(
                port=settings.port,
                baudrate=settings.baudrate,
                bytesize=settings.bytesize,
                parity=settings.parity,
                stopbits=settings.stopbits,
                timeout=0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as err:
            # ENOENT: the device node is gone (unplugged) or not there yet.
            missing = getattr(err, "errno", None) == errno.ENOENT
            raise ScannerUnavailable(
                f"cannot open {settings.port}: {err}", missing=missing
            ) from err

    async def _session(self, port: serial.Serial) -> None:
        settings = self._settings
        terminator = settings.terminator.encode("ascii") if settings.terminator else None
        framer = LineFramer(terminator, settings.max_line)
        self._malformed_here = 0
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = port.fileno()
        loop.add_reader(fd, readable.set)
        try:
            while True:
                wait = settings.line_timeout_s if framer.pending else None
                try:
                    async with asyncio.timeout(wait):
                        await readable.wait()
                except TimeoutError:
                    cut = self._cut_off(framer, f"without a terminator for {wait:g} s")
                    if cut is not None:
                        await self._queue.put(self._malformed(cut))
                    continue
                readable.clear()
                try:
                    data = port.read(READ_CHUNK)
                except (serial.SerialException, OSError) as err:
                    raise ScannerDisconnected(f"{settings.port}: {err}") from err
                for frame in framer.feed(data):
                    await self._frame(frame)
        finally:
            loop.remove_reader(fd)
            cut = self._cut_off(framer, "cut off when the port closed")
            if cut is not None:
                # No waiting here: on a stop nobody may be reading the queue any more.
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(self._malformed(cut))

    @staticmethod
    def _cut_off(framer: LineFramer, why: str) -> MalformedScan | None:
        frame = framer.discard()
        if isinstance(frame, bytes):
            return MalformedScan(f"partial line {why}", frame)
        return frame.error() if frame is not None else None

    async def _frame(self, frame: bytes | Overlong) -> None:
        if isinstance(frame, Overlong):
            await self._queue.put(self._malformed(frame.error()))
            return
        try:
            scan = parse_scan(frame, self._settings)
        except MalformedScan as err:
            await self._queue.put(self._malformed(err))
            return
        self.scans += 1
        await self._queue.put(ScanRead(self.name, scan, frame, time.time_ns() // 1000))

    def _malformed(self, err: MalformedScan) -> ReaderEvent:
        """Count and log a malformed line; its event for the consumer."""
        self.malformed += 1
        self._malformed_here += 1
        detail = f"malformed scan: {err.reason}: {show(err.data)}"[:MAX_ERROR_TEXT]
        self._last_error = detail
        n = self._malformed_here
        if n <= MALFORMED_LOGGED or n % 100 == 0:
            self._log.warning("%s (%d on this connection)", detail, n)
        return DecodeFailed(self.name, detail)

    async def _set_state(self, state: ReaderState, detail: str) -> None:
        changed = state != self._state
        self._state = state
        if state in ("disconnected", "error"):
            self._last_error = detail[:MAX_ERROR_TEXT]
        if not changed and state != "connected":
            # Retries against an unplugged scanner: quiet until something changes.
            self._log.debug("%s: %s", state, detail)
            return
        log = self._log.info if state in ("connecting", "connected") else self._log.warning
        log("%s: %s", state, detail)
        await self._queue.put(StateChanged(self.name, state, detail=detail))
