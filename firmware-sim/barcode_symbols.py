"""What a simulated barcode scanner reads and the line it sends for each scan.

A ``Symbol`` is what one barcode holds: its content and its AIM symbology identifier.
What a line holds is the contract in ``wire.barcodes`` (the edge parses it with the same
modules)::

    [prefix] [AIM symbology identifier] content [suffix] terminator

* GS1-128 (``]C1``) and GS1 DataMatrix (``]d2``): a GS1 element string — GTIN (01),
  expiry (17), lot (10), serial (21), count (30) — with GS (0x1D, FNC1) after each
  variable-length field but the last;
* EAN-13 (``]E0``) and UPC-A: UPC-A goes out as ``]E0`` with 13 digits (a leading zero),
  as AIM specifies and most scanners do by default;
* location labels ``LOC:<location id>`` and command barcodes ``CMD:RECEIVE``,
  ``CMD:PICK``, ``CMD:MOVE``, ``CMD:COUNT``, ``CMD:END`` as Code 128 (``]C0``).

Prefix, suffix, terminator (CR, LF, CRLF, TAB), whether AIM identifiers are sent and the
character rate are the scanner's ``ScannerStyle``. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

from firmware_sim.errors import SimConfigError
from wire.barcodes import command_barcode, location_label
from wire.gs1 import digital_link, gs1_item, parse_gtin, sscc_label
from wire.scans import (
    SYMBOLOGY_EAN13,
    SYMBOLOGY_GS1_128,
    SYMBOLOGY_GS1_DATAMATRIX,
    SYMBOLOGY_QR,
    BarcodeError,
    Command,
)

SYMBOLOGY_CODE128: Final = "]C0"
"""Code 128 without FNC1: location labels and command barcodes."""
MAX_CHAR_RATE: Final = 1_000_000


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
