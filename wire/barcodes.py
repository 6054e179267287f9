"""The barcode contract between serial scanners (real or simulated) and the edge. No I/O.

A scanner sends one line per scan. On the wire a line is::

    [prefix] [AIM symbology identifier] content [suffix] terminator

``prefix``, ``suffix`` and ``terminator`` are scanner settings (the edge's ``[[scanners]]``
table says what to expect; CR, LF or CRLF by default). The AIM identifier is three
characters, ``]`` + symbology code + modifier, e.g. ``]C1`` for GS1-128. The content is one
of:

- a location label ``LOC:<location id>`` (``LOC:wh1.aisle.3``): the scanner is now there;
- a command ``CMD:RECEIVE``, ``CMD:PICK``, ``CMD:MOVE``, ``CMD:COUNT`` or ``CMD:END``: switch
  the scanner's mode (``END`` closes a count);
- an item: a GS1 element string (AI 01 or 02 GTIN, 10 lot, 17 expiry, 21 serial, 30 or 37
  count; a variable-length field is ended by FNC1, sent as the group separator ``GS``
  0x1D) or a bare EAN-13, UPC-A, EAN-8 or GTIN-14, which becomes a GTIN-14.

GS1 parsing is biip's; this module only decides which of biip's answers applies and turns
it into typed values. A GTIN whose check digit is wrong, a date that does not exist, an
unknown AI, a count of zero: each is a ``BarcodeError`` whose message names what was wrong.

The encoders at the end (``location_label``, ``command_barcode``, ``gs1_item``,
``scan_line``) build what a scanner sends; the simulator uses them and every encoder's
output parses back to its input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final, Literal

from biip import ParseConfig, ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin

# --- the contract -------------------------------------------------------------------------

MAX_LINE: Final = 512
"""Longest scan line in bytes, terminator excluded. A 2D GS1 code tops out near 100."""
GS: Final = "\x1d"
"""FNC1 inside a GS1 element string: ends a variable-length field."""
LOCATION_PREFIX: Final = "LOC:"
COMMAND_PREFIX: Final = "CMD:"
DEFAULT_TERMINATOR: Final = "\r"
"""What the simulator ends lines with; the edge accepts CR, LF or CRLF by default."""
ANY_TERMINATORS: Final = (b"\r", b"\n")
"""Line ends accepted when no terminator is configured; CRLF is CR then an empty line."""

SYMBOLOGY_GS1_128: Final = "]C1"
SYMBOLOGY_GS1_DATAMATRIX: Final = "]d2"
SYMBOLOGY_GS1_QR: Final = "]Q3"
SYMBOLOGY_EAN13: Final = "]E0"
"""EAN-13 and UPC-A (UPC-A is sent as an EAN-13 with a leading zero)."""
SYMBOLOGY_EAN8: Final = "]E4"
GS1_SYMBOLOGIES: Final = frozenset(
    {SYMBOLOGY_GS1_128, SYMBOLOGY_GS1_DATAMATRIX, SYMBOLOGY_GS1_QR, "]e0", "]J1"}
)
"""Symbologies whose content is a GS1 element string (also GS1 DataBar and DotCode)."""
GTIN_SYMBOLOGIES: Final = frozenset({SYMBOLOGY_EAN13, SYMBOLOGY_EAN8, "]I1"})
"""Symbologies whose content is a bare GTIN (also ITF-14)."""
SYMBOLOGY_LENGTH: Final = 3
_SYMBOLOGY = re.compile(r"\][A-Za-z][0-9A-Za-z]")

LOCATION_PATTERN: Final = r"^[A-Za-z0-9_-]{1,32}(\.[A-Za-z0-9_-]{1,32}){0,7}$"
"""A location id: dotted path from site to bin (the server's location ids)."""
MAX_LOCATION: Final = 128
MAX_QTY: Final = 1_000_000
"""Largest count one scan may carry (the wire ``Quantity.qty`` bound)."""
GTIN_LENGTHS: Final = frozenset({8, 12, 13, 14})
MAX_FIELD: Final = 20
"""GS1 lot (AI 10) and serial (AI 21) are at most 20 characters."""

_LOCATION = re.compile(LOCATION_PATTERN)
_GS1_CONFIG: Final = ParseConfig(separator_chars=(GS,))


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


class BarcodeError(ValueError):
    """A scan that is not a valid label, command or item; the message says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- typed scans --------------------------------------------------------------------------


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


Scan = LocationScan | CommandScan | ItemScan


# --- parsing ------------------------------------------------------------------------------


def split_symbology(text: str) -> tuple[str | None, str]:
    """The leading AIM symbology identifier (or None) and the content after it."""
    if _SYMBOLOGY.match(text):
        return text[:SYMBOLOGY_LENGTH], text[SYMBOLOGY_LENGTH:]
    return None, text


def parse_barcode(
    text: str,
    *,
    symbology_ids: bool = True,
    location_prefix: str = LOCATION_PREFIX,
    command_prefix: str = COMMAND_PREFIX,
) -> Scan:
    """The typed value of one scan's text (prefix, suffix and terminator already removed).

    Args:
        text: the scan, control characters other than GS already stripped.
        symbology_ids: the scanner sends AIM identifiers; a leading ``]Xm`` is one.
        location_prefix: what starts a location label.
        command_prefix: what starts a command barcode.

    Raises:
        BarcodeError: the text is none of the known kinds, or is one with a bad value.
    """
    symbology, content = split_symbology(text) if symbology_ids else (None, text)
    if not content:
        raise BarcodeError("empty scan" + (f" (symbology {symbology} only)" if symbology else ""))
    if content.startswith(location_prefix):
        return LocationScan(parse_location(content[len(location_prefix) :]))
    if content.startswith(command_prefix):
        name = content[len(command_prefix) :]
        try:
            return CommandScan(Command(name.upper()))
        except ValueError:
            known = ", ".join(c.value for c in Command)
            raise BarcodeError(f"unknown command {name[:40]!r} (known: {known})") from None
    return parse_item(content, symbology)


def parse_location(location: str) -> str:
    """A location id from a label, checked against ``LOCATION_PATTERN``.

    Raises:
        BarcodeError: not a dotted location id of at most ``MAX_LOCATION`` characters.
    """
    if len(location) > MAX_LOCATION or not _LOCATION.match(location):
        raise BarcodeError(
            f"location label {location[:60]!r} is not a dotted location id like 'wh1.aisle.3'"
        )
    return location


def parse_item(content: str, symbology: str | None = None) -> ItemScan:
    """An item from a GS1 element string or a bare GTIN.

    Content sent under a GS1 symbology is an element string; under EAN/UPC/ITF it is a
    GTIN. Without an identifier, 8, 12, 13 or 14 digits are a GTIN and anything else is
    tried as an element string.

    Raises:
        BarcodeError: not a GTIN or element string, a wrong check digit, a bad field.
    """
    if symbology in GS1_SYMBOLOGIES:
        return _element_string(content, symbology)
    if symbology in GTIN_SYMBOLOGIES or (content.isdigit() and len(content) in GTIN_LENGTHS):
        return ItemScan(gtin=parse_gtin(content), symbology=symbology)
    if not content[:2].isdigit():
        raise BarcodeError(
            f"not a location label, command or GS1 item: starts with {content[:16]!r}"
        )
    return _element_string(content, symbology)


def parse_gtin(digits: str) -> str:
    """The GTIN-14 of an EAN-8, UPC-A, EAN-13 or GTIN-14, its check digit verified.

    Raises:
        BarcodeError: not 8, 12, 13 or 14 digits, a wrong check digit, or all zeros.
    """
    if not digits.isascii() or not digits.isdigit() or len(digits) not in GTIN_LENGTHS:
        raise BarcodeError(f"GTIN {digits[:20]!r} is not 8, 12, 13 or 14 digits")
    try:
        gtin14 = Gtin.parse(digits).as_gtin_14()
    except ParseError as err:
        raise BarcodeError(f"GTIN {digits!r}: {err}") from err
    if not gtin14.strip("0"):
        raise BarcodeError("GTIN is all zeros")
    return gtin14


def _element_string(content: str, symbology: str | None) -> ItemScan:
    try:
        message = GS1Message.parse(content, config=_GS1_CONFIG)
    except ParseError as err:
        raise BarcodeError(f"GS1 element string: {err}") from err
    fields: dict[str, GS1ElementString] = {}
    for element in message.element_strings:
        code = element.ai.ai
        if code in fields and fields[code].value != element.value:
            raise BarcodeError(f"GS1 element string: AI ({code}) appears twice")
        fields[code] = element
    if not fields:
        raise BarcodeError("GS1 element string holds no element")
    identity = fields.get("01") or fields.get("02")
    if identity is None:
        present = ", ".join(f"({code})" for code in fields)
        raise BarcodeError(f"GS1 element string has no GTIN, AI (01) or (02); it has {present}")
    if identity.gtin is None:
        raise BarcodeError(f"GS1 AI ({identity.ai.ai}): {identity.gtin_error or 'not a GTIN'}")
    expiry = fields.get("17")
    qty = _count(fields)
    serial = _text(fields, "21")
    if serial is not None and qty != 1:
        raise BarcodeError(f"a serialized item (AI 21) cannot carry a count of {qty}")
    return ItemScan(
        gtin=parse_gtin(identity.value),
        lot=_text(fields, "10"),
        expiry=expiry.date if expiry is not None else None,
        serial=serial,
        qty=qty,
        symbology=symbology,
    )


def _text(fields: dict[str, GS1ElementString], code: str) -> str | None:
    element = fields.get(code)
    return element.value if element is not None else None


def _count(fields: dict[str, GS1ElementString]) -> int:
    # AI 37 counts trade items in a logistic unit (with 02); AI 30 is a variable count.
    # A label carrying both is contradictory, so neither is guessed at.
    if "30" in fields and "37" in fields:
        raise BarcodeError("GS1 element string carries both AI (30) and AI (37) counts")
    element = fields.get("37") or fields.get("30")
    if element is None:
        return 1
    qty = int(element.value)
    if not 1 <= qty <= MAX_QTY:
        raise BarcodeError(f"GS1 AI ({element.ai.ai}) count {qty} is outside 1..{MAX_QTY}")
    return qty


# --- encoding (what a scanner sends) -------------------------------------------------------


def location_label(location: str, prefix: str = LOCATION_PREFIX) -> str:
    """The content of a location label.

    Raises:
        BarcodeError: ``location`` is not a location id.
    """
    return prefix + parse_location(location)


def command_barcode(command: Command, prefix: str = COMMAND_PREFIX) -> str:
    """The content of a command barcode."""
    return prefix + command.value


def with_check_digit(payload: str) -> str:
    """``payload`` (7, 11, 12 or 13 digits) followed by its GS1 check digit."""
    if not payload.isdigit() or len(payload) + 1 not in GTIN_LENGTHS:
        raise BarcodeError(f"GTIN payload {payload[:20]!r} is not 7, 11, 12 or 13 digits")
    return payload + str(gs1_standard_check_digit(payload))


def gs1_item(
    gtin: str,
    *,
    lot: str | None = None,
    expiry: date | None = None,
    serial: str | None = None,
    count: int | None = None,
) -> str:
    """A GS1 element string for an item, with GS after each variable-length field but the last.

    Fixed-length fields (01, 17) come first so only the variable ones need separators.

    Raises:
        BarcodeError: a value the edge would refuse (checked by parsing the result back).
    """
    gtin14 = parse_gtin(gtin)
    fixed = f"01{gtin14}" + (f"17{expiry:%y%m%d}" if expiry is not None else "")
    variable = [
        f"{ai}{value}"
        for ai, value in (("10", lot), ("21", serial), ("30", count))
        if value is not None
    ]
    text = fixed + GS.join(variable)
    parsed = parse_item(text, SYMBOLOGY_GS1_128)
    if (parsed.lot, parsed.serial, parsed.qty) != (lot, serial, count or 1):
        raise BarcodeError(f"lot {lot!r} or serial {serial!r} does not survive GS1 encoding")
    return text


def scan_line(
    content: str,
    *,
    symbology: str | None = None,
    prefix: str = "",
    suffix: str = "",
    terminator: str = DEFAULT_TERMINATOR,
) -> bytes:
    """The bytes a scanner sends for one scan (ASCII).

    Raises:
        BarcodeError: the line is not ASCII or longer than ``MAX_LINE``.
    """
    body = f"{prefix}{symbology or ''}{content}{suffix}"
    if not body.isascii():
        raise BarcodeError("a scan line must be ASCII")
    data = body.encode("ascii")
    if len(data) > MAX_LINE:
        raise BarcodeError(f"a scan line of {len(data)} bytes exceeds {MAX_LINE}")
    return data + terminator.encode("ascii")


__all__ = [
    "ANY_TERMINATORS",
    "COMMAND_PREFIX",
    "DEFAULT_TERMINATOR",
    "GS",
    "GS1_SYMBOLOGIES",
    "GTIN_SYMBOLOGIES",
    "LOCATION_PATTERN",
    "LOCATION_PREFIX",
    "MAX_LINE",
    "MAX_LOCATION",
    "MAX_QTY",
    "MODE_OF",
    "SYMBOLOGY_EAN8",
    "SYMBOLOGY_EAN13",
    "SYMBOLOGY_GS1_128",
    "SYMBOLOGY_GS1_DATAMATRIX",
    "SYMBOLOGY_GS1_QR",
    "BarcodeError",
    "Command",
    "CommandScan",
    "ItemScan",
    "LocationScan",
    "Mode",
    "Scan",
    "command_barcode",
    "gs1_item",
    "location_label",
    "parse_barcode",
    "parse_gtin",
    "parse_item",
    "parse_location",
    "scan_line",
    "split_symbology",
    "with_check_digit",
]
