"""A simulated serial barcode scanner on a pseudo-terminal.

``ScannerSimulator`` opens a pty pair (``os.openpty``), puts the terminal in raw mode and
points a stable symlink (``link``, e.g. ``tmp/scanner-1``) at its slave side
(``/dev/pts/N``), which the edge opens with pyserial as it would a USB scanner's
``/dev/serial/by-id/...`` link. Scans are written to the master side, one line each: what
a barcode holds and the line a scan of it makes are ``barcode_symbols``' (``Symbol``,
``ScannerStyle``). Lines are typed out at a bounded rate (``char_rate``, a 9600-baud link
moves about 960 characters a second) and ``play`` leaves a human pause (0.5..3 s by
default) between scans.

Faults (``inject``): ``garbage`` (noise bytes, no terminator), ``partial_line`` (part of a
scan, no terminator), ``long_line`` (far longer than any real barcode, terminated) and
``unplug`` (the master side closes: an open tty reads EOF or EIO; after ``delay_s`` a new
pty appears behind the same link). Nothing here decides what the edge does about them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import time
import tty
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from firmware_sim.barcode_symbols import ScannerStyle, Symbol
from firmware_sim.errors import SimConfigError, SimError

logger = logging.getLogger(__name__)

WRITE_TIMEOUT_S: Final = 5.0
"""How long a write may wait for the other side to read before it fails."""
TICK_S: Final = 0.01
LONG_LINE_BYTES: Final = 8192
"""Length of the ``long_line`` fault: sixteen times ``wire.barcodes.MAX_LINE``."""
MAX_FAULT_BYTES: Final = 1024 * 1024
MAX_RECEIVED: Final = 64 * 1024
HUMAN_GAP_S: Final = (0.5, 3.0)


class ScannerError(SimError):
    """The pty cannot be made, written or linked (the message says which)."""


class ScannerFault(StrEnum):
    GARBAGE = "garbage"
    PARTIAL_LINE = "partial_line"
    LONG_LINE = "long_line"
    UNPLUG = "unplug"


def _set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


class ScannerSimulator:
    """A barcode scanner behind a pty; an async context manager (plugged in while entered).

    Args:
        link: where the stable symlink to the tty goes (its folder is made); None makes
            no link and ``path`` is the only way in.
        name: the scanner's name (logs).
        style: prefix, suffix, terminator, AIM identifiers, character rate.
        seed: seed of the human pauses and of the noise (None: fresh).
        gap_s: (shortest, longest) pause between scans in ``play``.
    """

    def __init__(
        self,
        link: str | Path | None = None,
        *,
        name: str = "handheld-1",
        style: ScannerStyle | None = None,
        seed: int | str | None = None,
        gap_s: tuple[float, float] = HUMAN_GAP_S,
    ) -> None:
        if not 0 <= gap_s[0] <= gap_s[1] <= 3600:
            raise SimConfigError(f"gap_s {gap_s} must be (shortest, longest) within 0..3600")
        self.link = Path(link) if link is not None else None
        self.name = name
        self.style = style or ScannerStyle()
        self.gap_s = gap_s
        self._rng = random.Random(seed)
        self._master: int | None = None
        self._slave: int | None = None
        self._path: str | None = None
        self._lock = asyncio.Lock()
        self._control: set[asyncio.Task[None]] = set()
        self.sent: list[bytes] = []
        """Every whole scan line written (terminator included), in order."""
        self.faults: list[tuple[float, str, bytes]] = []
        """Every fault: (monotonic time, kind, bytes written for it)."""
        self.plugs = 0
        self.received = bytearray()
        """What the other side wrote to the scanner (bounded to ``MAX_RECEIVED``)."""

    # --- plugging ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.plug()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._control):
            task.cancel()
        if self._control:
            await asyncio.wait(self._control)
        self.unplug()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def path(self) -> str:
        """The tty the edge opens (the link's target).

        Raises:
            ScannerError: the scanner is unplugged.
        """
        if self._path is None:
            raise ScannerError(f"scanner {self.name} is unplugged")
        return self._path

    @property
    def port(self) -> str:
        """What to configure the edge with: the link if there is one, else the tty."""
        return str(self.link) if self.link is not None else self.path

    def plug(self) -> None:
        """Make a new pty (raw mode) and point the link at it.

        Raises:
            ScannerError: already plugged in, or the pty or link cannot be made.
        """
        if self._master is not None:
            raise ScannerError(f"scanner {self.name} is already plugged in")
        try:
            master, slave = os.openpty()
        except OSError as err:
            raise ScannerError(f"cannot open a pseudo-terminal: {err}") from err
        try:
            # Raw: no echo, no CR/LF translation, no line editing; bytes pass as sent.
            tty.setraw(slave)
            _set_nonblocking(master)
            path = os.ttyname(slave)
            if self.link is not None:
                self.link.parent.mkdir(parents=True, exist_ok=True)
                staging = self.link.with_name(f".{self.link.name}.{os.getpid()}")
                staging.unlink(missing_ok=True)
                staging.symlink_to(path)
                os.replace(staging, self.link)  # atomic: the link is never half made
        except OSError as err:
            os.close(master)
            os.close(slave)
            raise ScannerError(f"cannot set up scanner {self.name} at {self.link}: {err}") from err
        self._master, self._slave, self._path = master, slave, path
        self.plugs += 1
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to read into
            asyncio.get_running_loop().add_reader(master, self._on_readable)
        logger.info("scanner %s plugged in at %s (%s)", self.name, self.port, path)

    def unplug(self) -> None:
        """Close the pty (an open tty sees EOF/EIO) and remove the link (idempotent)."""
        master, self._master = self._master, None
        slave, self._slave = self._slave, None
        if master is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(master)
            os.close(master)
        if slave is not None:
            os.close(slave)
        if self.link is not None and master is not None:
            with contextlib.suppress(FileNotFoundError):
                if self.link.is_symlink():
                    self.link.unlink()
        if master is not None:
            logger.info("scanner %s unplugged", self.name)
        self._path = None

    async def replug(self, delay_s: float = 0.5) -> None:
        """Unplug, wait ``delay_s``, plug in again (a new tty behind the same link)."""
        async with self._lock:
            self.faults.append((time.monotonic(), ScannerFault.UNPLUG, b""))
            self.unplug()
            await asyncio.sleep(delay_s)
            self.plug()

    def _on_readable(self) -> None:
        master = self._master
        if master is None:
            return
        try:
            data = os.read(master, 4096)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            data = b""  # EIO: nobody has the tty open right now
        if data and len(self.received) < MAX_RECEIVED:
            self.received += data[: MAX_RECEIVED - len(self.received)]

    # --- writing -------------------------------------------------------------------------------

    async def _write(self, data: bytes, rate: float) -> None:
        """Write ``data`` at ``rate`` characters/s (0: as fast as the tty takes it).

        Raises:
            ScannerError: unplugged, or the other side stopped reading.
        """
        view = memoryview(data)
        chunk = len(data) if rate <= 0 else max(1, int(rate * TICK_S))
        stalled_since: float | None = None
        while view:
            master = self._master
            if master is None:
                raise ScannerError(f"scanner {self.name} is unplugged")
            try:
                written = os.write(master, view[:chunk])
            except BlockingIOError:
                written = 0
            except OSError as err:
                raise ScannerError(f"scanner {self.name}: write failed: {err}") from err
            view = view[written:]
            if written:
                stalled_since = None
            elif stalled_since is None:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > WRITE_TIMEOUT_S:
                raise ScannerError(
                    f"scanner {self.name}: nobody read the tty for {WRITE_TIMEOUT_S:g} s"
                )
            if view:
                await asyncio.sleep(TICK_S if rate > 0 or not written else 0)

    async def scan(self, symbol: Symbol) -> bytes:
        """Type out one scan of ``symbol``; returns the line as sent.

        Raises:
            ScannerError: unplugged, or nobody reads.
        """
        line = self.style.line(symbol)
        async with self._lock:
            await self._write(line, self.style.char_rate)
        self.sent.append(line)
        return line

    async def play(
        self, symbols: Iterable[Symbol], *, gap_s: tuple[float, float] | None = None
    ) -> list[bytes]:
        """Scan each symbol with a human pause (``gap_s`` or the scanner's) before each
        but the first; the lines as sent."""
        low, high = gap_s or self.gap_s
        lines = []
        for index, symbol in enumerate(symbols):
            if index:
                await asyncio.sleep(self._rng.uniform(low, high))
            lines.append(await self.scan(symbol))
        return lines

    # --- faults --------------------------------------------------------------------------------

    async def inject(self, kind: str, **params: object) -> bytes:
        """Act out a scanner fault now; returns the bytes written for it.

        * ``garbage``: ``size`` (64) bytes of noise (non-ASCII and control bytes, no
          terminator).
        * ``partial_line``: the first ``fraction`` (0.5) of a scan of ``symbol`` (a
          default EAN-13 if not given), no terminator.
        * ``long_line``: ``size`` (``LONG_LINE_BYTES``) digits and the terminator.
        * ``unplug``: close the pty; a new one appears at the link after ``delay_s`` (0.5).

        Raises:
            SimConfigError: unknown kind or bad parameter.
            ScannerError: unplugged, or nobody reads.
        """
        fault, params = check_scanner_fault(kind, **params)
        if fault is ScannerFault.UNPLUG:
            delay = _number(params.get("delay_s", 0.5), "delay_s", 0, 600)
            await self.replug(delay)
            return b""
        if fault is ScannerFault.GARBAGE:
            size = int(_number(params.get("size", 64), "size", 1, MAX_FAULT_BYTES))
            # Bytes no scanner sends in a line: high-bit and control bytes, never a
            # terminator, so the noise joins whatever line comes next.
            pool = [b for b in range(256) if b >= 0x80 or b in (0x00, 0x07, 0x1B, 0x7F)]
            data = bytes(self._rng.choice(pool) for _ in range(size))
        elif fault is ScannerFault.PARTIAL_LINE:
            fraction = _number(params.get("fraction", 0.5), "fraction", 0.01, 0.99)
            symbol = params.get("symbol", Symbol.ean13("4006381333931"))
            if not isinstance(symbol, Symbol):
                raise SimConfigError("partial_line: symbol must be a Symbol")
            line = self.style.line(symbol)[: -len(self.style.terminator.value)]
            data = line[: max(1, int(len(line) * fraction))]
        else:
            size = int(_number(params.get("size", LONG_LINE_BYTES), "size", 1, MAX_FAULT_BYTES))
            digits = "".join(self._rng.choice("0123456789") for _ in range(size))
            data = (digits + self.style.terminator.value).encode("ascii")
        async with self._lock:
            await self._write(data, 0)
        self.faults.append((time.monotonic(), fault.value, data))
        logger.warning("scanner %s: fault %s (%d bytes)", self.name, fault.value, len(data))
        return data

    def schedule(self, delay_s: float, kind: str, **params: object) -> None:
        """Inject a fault ``delay_s`` from now (owned by the scanner; cancelled on exit)."""

        async def later() -> None:
            await asyncio.sleep(delay_s)
            await self.inject(kind, **params)

        task = asyncio.create_task(later(), name=f"{self.name}-{kind}")
        self._control.add(task)
        task.add_done_callback(self._control.discard)


_FAULT_PARAMS: Final = {
    ScannerFault.GARBAGE: {"size"},
    ScannerFault.PARTIAL_LINE: {"fraction", "symbol"},
    ScannerFault.LONG_LINE: {"size"},
    ScannerFault.UNPLUG: {"delay_s"},
}


def check_scanner_fault(kind: str, **params: object) -> tuple[ScannerFault, dict[str, object]]:
    """Check a scanner fault's kind and parameter names (values are checked when it runs).

    Raises:
        SimConfigError: unknown kind or parameter.
    """
    try:
        fault = ScannerFault(kind)
    except ValueError as err:
        known = ", ".join(f.value for f in ScannerFault)
        raise SimConfigError(f"unknown scanner fault {kind!r}; known: {known}") from err
    unknown = sorted(set(params) - _FAULT_PARAMS[fault])
    if unknown:
        allowed = ", ".join(sorted(_FAULT_PARAMS[fault]))
        raise SimConfigError(
            f"scanner fault {kind}: unknown parameter {unknown[0]!r} (parameters: {allowed})"
        )
    return fault, dict(params)


def _number(value: object, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SimConfigError(f"{what} must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError as err:
        raise SimConfigError(f"{what} must be a number, not {value!r}") from err
    if not low <= number <= high:
        raise SimConfigError(f"{what} = {number:g} outside {low:g}..{high:g}")
    return number
