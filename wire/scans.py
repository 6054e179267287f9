"""What a scan is: the typed values a barcode becomes, and the scanners' symbology codes. No I/O.

A scan is a location label (``LocationScan``), a command barcode (``CommandScan``), a trade
item (``ItemScan``) or a logistic unit's label (``PalletScan``). ``wire.barcodes`` turns a
scan line into one of them, with ``wire.gs1`` reading the GS1 content; the edge's scan
sessions and the simulator's ground truth say what each one means in a scanner's mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final, Literal

from wire.errors import WireError

SYMBOLOGY_GS1_128: Final = "]C1"
SYMBOLOGY_GS1_DATAMATRIX: Final = "]d2"
SYMBOLOGY_GS1_QR: Final = "]Q3"
SYMBOLOGY_EAN13: Final = "]E0"
"""EAN-13 and UPC-A (UPC-A is sent as an EAN-13 with a leading zero)."""
SYMBOLOGY_EAN8: Final = "]E4"
SYMBOLOGY_QR: Final = "]Q1"
"""QR Code without FNC1: what a Digital Link QR code is sent as."""
GS1_SYMBOLOGIES: Final = frozenset(
    {SYMBOLOGY_GS1_128, SYMBOLOGY_GS1_DATAMATRIX, SYMBOLOGY_GS1_QR, "]e0", "]J1"}
)
"""Symbologies whose content is a GS1 element string (also GS1 DataBar and DotCode)."""
GTIN_SYMBOLOGIES: Final = frozenset({SYMBOLOGY_EAN13, SYMBOLOGY_EAN8, "]I1"})
"""Symbologies whose content is a bare GTIN (also ITF-14)."""
SYMBOLOGY_LENGTH: Final = 3
"""An AIM symbology identifier: ``]`` + symbology code + modifier."""

MAX_QTY: Final = 1_000_000
"""Largest count one scan may carry (the wire ``Quantity.qty`` bound)."""


class Command(StrEnum):
    """What a command barcode (``CMD:<NAME>``) tells the scanner's session."""

    RECEIVE = "RECEIVE"
    PICK = "PICK"
    MOVE = "MOVE"
    COUNT = "COUNT"
    END = "END"


Mode = Literal["receive", "pick", "move", "count"]
MODE_OF: Final[dict[Command, Mode]] = {
    Command.RECEIVE: "receive",
    Command.PICK: "pick",
    Command.MOVE: "move",
    Command.COUNT: "count",
}
"""The mode each mode command switches to (``END`` is not a mode)."""


class BarcodeError(WireError):
    """A scan that is not a valid label, command or item; the message says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LocationScan:
    """A location label: the scanner is now at ``location``."""

    location: str


@dataclass(frozen=True, slots=True)
class CommandScan:
    """A command barcode."""

    command: Command


@dataclass(frozen=True, slots=True)
class ItemScan:
    """A trade item: its GTIN-14 and what else the barcode said about it."""

    gtin: str
    """14 digits, check digit verified."""
    lot: str | None = None
    expiry: date | None = None
    serial: str | None = None
    qty: int = 1
    symbology: str | None = None
    """The AIM identifier the scanner sent, if any."""


@dataclass(frozen=True, slots=True)
class PalletScan:
    """A logistic unit's label: its SSCC (AI 00), as digits and as an EPC pure identity."""

    sscc: str
    """18 digits, check digit verified."""
    epc: str
    """``urn:epc:id:sscc:<company prefix>.<serial reference>`` (what an SSCC tag reads as)."""
    symbology: str | None = None


Scan = LocationScan | CommandScan | ItemScan | PalletScan


__all__ = [
    "GS1_SYMBOLOGIES",
    "GTIN_SYMBOLOGIES",
    "MAX_QTY",
    "MODE_OF",
    "SYMBOLOGY_EAN8",
    "SYMBOLOGY_EAN13",
    "SYMBOLOGY_GS1_128",
    "SYMBOLOGY_GS1_DATAMATRIX",
    "SYMBOLOGY_GS1_QR",
    "SYMBOLOGY_LENGTH",
    "SYMBOLOGY_QR",
    "BarcodeError",
    "Command",
    "CommandScan",
    "ItemScan",
    "LocationScan",
    "Mode",
    "PalletScan",
    "Scan",
]
