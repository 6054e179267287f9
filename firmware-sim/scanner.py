"""A simulated serial barcode scanner on a pseudo-terminal.

``ScannerSimulator`` opens a pty pair (``os.openpty``), puts the terminal in raw mode and
points a stable symlink (``link``, e.g. ``tmp/scanner-1``) at its slave side
(``/dev/pts/N``), which the edge opens with pyserial as it would a USB scanner's
``/dev/serial/by-id/...`` link. Scans are written to the master side, one line each.

What a line holds is the contract in ``wire.barcodes`` (the edge parses it with the same
module)::

    [prefix] [AIM symbology identifier] content [suffix] terminator

* GS1-128 (``]C1``) and GS1 DataMatrix (``]d2``): a GS1 element string — GTIN (01),
  expiry (17), lot (10), serial (21), count (30) — with GS (0x1D, FNC1) after each
  variable-length field but the last;
* EAN-13 (``]E0``) and UPC-A: UPC-A goes out as ``]E0`` with 13 digits (a leading zero),
  as AIM specifies and most scanners do by default;
* location labels ``LOC:<location id>`` and command barcodes ``CMD:RECEIVE``,
  ``CMD:PICK``, ``CMD:MOVE``, ``CMD:COUNT``, ``CMD:END`` as Code 128 (``]C0``).

Prefix, suffix, terminator (CR, LF, CRLF, TAB) and whether AIM identifiers are sent are
the scanner's ``ScannerStyle``. Lines are typed out at a bounded rate (``char_rate``, a
9600-baud link moves about 960 characters a second) and ``play`` leaves a human pause
(0.5..3 s by default) between scans.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from firmware_sim.errors import SimConfigError, SimError
from wire.barcodes import command_barcode, location_label
from wire.gs1 import GS, digital_link, gs1_item, parse_gtin, sscc_label
from wire.scans import (
    SYMBOLOGY_EAN13,
    SYMBOLOGY_GS1_128,
    SYMBOLOGY_GS1_DATAMATRIX,
    SYMBOLOGY_QR,
    BarcodeError,
    Command,
)

logger = logging.getLogger(__name__)

SYMBOLOGY_CODE128: Final = "]C0"
"""Code 128 without FNC1: location labels and command barcodes."""
MAX_CHAR_RATE: Final = 1_000_000
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


class Terminator(StrEnum):
    CR = "\r"
    LF = "\n"
    CRLF = "\r\n"
    TAB = "\t"


TERMINATORS: Final = {
    "cr": Terminator.CR,
    "lf": Terminator.LF,
    "crlf": Terminator.CRLF,
    "tab": Terminator.TAB,
}
"""Terminator names as the command line and scenarios give them."""


@dataclass(frozen=True, slots=True)
class ScannerStyle:
    """How a scanner frames what it read (its configuration menu, as data)."""

    prefix: str = ""
    suffix: str = ""
    terminator: Terminator = Terminator.CR
    aim_ids: bool = True
    """Send the AIM symbology identifier before the data."""
    char_rate: float = 960.0
    """Characters per second on the wire (0: each line in one write)."""

    def __post_init__(self) -> None:
        for what, text in (("prefix", self.prefix), ("suffix", self.suffix)):
            if not text.isascii() or len(text) > 16:
                raise SimConfigError(f"scanner {what} must be at most 16 ASCII characters")
        if not 0 <= self.char_rate <= MAX_CHAR_RATE:
            raise SimConfigError(f"char_rate {self.char_rate} outside 0..{MAX_CHAR_RATE}")

    def line(self, symbol: Symbol) -> bytes:
        """The bytes one scan of ``symbol`` puts on the wire."""
        aim = symbol.symbology if self.aim_ids and symbol.symbology else ""
        text = f"{self.prefix}{aim}{symbol.content}{self.suffix}{self.terminator.value}"
        return text.encode("ascii")


@dataclass(frozen=True, slots=True)
class Symbol:
    """What one barcode holds: its content and its AIM symbology identifier."""

    content: str
    symbology: str | None = None

    def __post_init__(self) -> None:
        if not self.content.isascii() or not self.content:
            raise SimConfigError("a barcode's content must be non-empty ASCII")

    @classmethod
    def gs1(
        cls,
        gtin: str,
        *,
        lot: str | None = None,
        expiry: date | None = None,
        serial: str | None = None,
        count: int | None = None,
        datamatrix: bool = False,
    ) -> Symbol:
        """A GS1-128 (or GS1 DataMatrix) label of a trade item.

        Raises:
            SimConfigError: a value the GS1 element string cannot carry.
        """
        try:
            content = gs1_item(gtin, lot=lot, expiry=expiry, serial=serial, count=count)
        except BarcodeError as err:
            raise SimConfigError(f"GS1 label for {gtin}: {err}") from err
        return cls(content, SYMBOLOGY_GS1_DATAMATRIX if datamatrix else SYMBOLOGY_GS1_128)

    @classmethod
    def pallet(cls, sscc: str) -> Symbol:
        """A GS1-128 pallet label: AI 00 and the SSCC.

        Raises:
            SimConfigError: not an SSCC the edge takes.
        """
        try:
            return cls(sscc_label(sscc), SYMBOLOGY_GS1_128)
        except BarcodeError as err:
            raise SimConfigError(f"pallet label: {err}") from err

    @classmethod
    def link(cls, symbol: Symbol) -> Symbol:
        """The GS1 Digital Link QR code of a GS1 label (``gs1`` or ``pallet``).

        Raises:
            SimConfigError: ``symbol`` is not a GS1 element string.
        """
        try:
            return cls(digital_link(symbol.content), SYMBOLOGY_QR)
        except BarcodeError as err:
            raise SimConfigError(f"Digital Link of {symbol.content!r}: {err}") from err

    @classmethod
    def ean13(cls, gtin: str) -> Symbol:
        """An EAN-13 of a GTIN-13 (or of a GTIN-14 whose indicator digit is 0).

        Raises:
            SimConfigError: not such a GTIN, or a wrong check digit.
        """
        try:
            gtin14 = parse_gtin(gtin)
        except BarcodeError as err:
            raise SimConfigError(str(err)) from err
        if gtin14[0] != "0":
            raise SimConfigError(f"GTIN {gtin} has indicator {gtin14[0]}: not an EAN-13")
        return cls(gtin14[1:], SYMBOLOGY_EAN13)

    @classmethod
    def upca(cls, gtin: str) -> Symbol:
        """A UPC-A (12 digits), sent as ``]E0`` and 13 digits with a leading zero.

        Raises:
            SimConfigError: not a GTIN-12 (or a GTIN with two leading zeros).
        """
        try:
            gtin14 = parse_gtin(gtin)
        except BarcodeError as err:
            raise SimConfigError(str(err)) from err
        if not gtin14.startswith("00"):
            raise SimConfigError(f"GTIN {gtin} is not a UPC-A (GTIN-12)")
        return cls(gtin14[1:], SYMBOLOGY_EAN13)

    @classmethod
    def location(cls, location: str) -> Symbol:
        """A location label (``LOC:wh1.aisle.3``).

        Raises:
            SimConfigError: not a dotted location id.
        """
        try:
            return cls(location_label(location), SYMBOLOGY_CODE128)
        except BarcodeError as err:
            raise SimConfigError(str(err)) from err

    @classmethod
    def command(cls, command: Command | str) -> Symbol:
        """A command barcode (``CMD:COUNT``).

        Raises:
            SimConfigError: not one of ``wire.scans.Command``.
        """
        try:
            return cls(command_barcode(Command(str(command).upper())), SYMBOLOGY_CODE128)
        except ValueError as err:
            known = ", ".join(c.value for c in Command)
            raise SimConfigError(f"unknown command {command!r} (known: {known})") from err


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


def parse_terminator(name: str) -> Terminator:
    """``cr``, ``lf``, ``crlf`` or ``tab`` as a terminator.

    Raises:
        SimConfigError: another name.
    """
    try:
        return TERMINATORS[name.lower()]
    except KeyError:
        raise SimConfigError(f"terminator {name!r}: use one of {', '.join(TERMINATORS)}") from None


def demo_symbols(gtins: Sequence[str], location: str = "wh1.aisle.3") -> list[Symbol]:
    """A short scan session: receive at a location, a few items, a count, the end."""
    symbols = [Symbol.command(Command.RECEIVE), Symbol.location(location)]
    for index, gtin in enumerate(gtins, start=1):
        symbols.append(Symbol.gs1(gtin, lot=f"L{index:04d}", serial=str(index)))
    symbols += [Symbol.command(Command.COUNT), Symbol.location(location)]
    symbols += [Symbol.gs1(gtin, count=2) for gtin in gtins]
    symbols.append(Symbol.command(Command.END))
    return symbols


__all__ = [
    "GS",
    "SYMBOLOGY_CODE128",
    "ScannerError",
    "ScannerFault",
    "ScannerSimulator",
    "ScannerStyle",
    "Symbol",
    "Terminator",
    "demo_symbols",
    "parse_terminator",
]
