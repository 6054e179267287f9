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
  0x1D) or a bare EAN-13, UPC-A, EAN-8 or GTIN-14, which becomes a GTIN-14;
- a logistic unit (a pallet): an element string whose identity is an SSCC, AI 00, and no
  GTIN (a label with AI 02 + 37 names its contents itself and is an item scan of that
  count). Its contents are what the server knows of the SSCC (``server.pallets``);
- a GS1 Digital Link URI (``https://id.gs1.org/01/09506000134352/21/S1``, any domain, or
  ``.../00/<SSCC>``) wherever an element string is accepted: the same AIs, carried in the
  path and query, mean the same.

GS1 parsing is biip's (element strings, Digital Link URIs, the company prefix length of an
SSCC) and epcpy's (the SSCC's EPC pure identity); this module only decides which of their
answers applies and turns it into typed values. A GTIN whose check digit is wrong, a date
that does not exist, an unknown AI, a count of zero: each is a ``BarcodeError`` whose
message names what was wrong.

The encoders at the end (``location_label``, ``command_barcode``, ``gs1_item``,
``sscc_label``, ``digital_link``, ``scan_line``) build what a scanner sends; the simulator
uses them and every encoder's output parses back to its input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final, Literal

from biip import ParseConfig, ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.sscc import Sscc
from epcpy import ConvertException
from epcpy.epc_schemes.sscc import SSCC

from wire.errors import WireError

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
SSCC_LENGTH: Final = 18
DIGITAL_LINK_SCHEMES: Final = ("https://", "http://")
"""What starts a GS1 Digital Link URI (biip parses the rest)."""
SYMBOLOGY_QR: Final = "]Q1"
"""QR Code without FNC1: what a Digital Link QR code is sent as."""
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


class BarcodeError(WireError):
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


@dataclass(frozen=True, slots=True)
class PalletScan:
    """A logistic unit's label: its SSCC (AI 00), as digits and as an EPC pure identity."""

    sscc: str
    """18 digits, check digit verified."""
    epc: str
    """``urn:epc:id:sscc:<company prefix>.<serial reference>`` (what an SSCC tag reads as)."""
    symbology: str | None = None


Scan = LocationScan | CommandScan | ItemScan | PalletScan


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
    return parse_label(content, symbology)


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


def parse_label(content: str, symbology: str | None = None) -> ItemScan | PalletScan:
    """An item or a pallet from a GS1 element string, a Digital Link URI or a bare GTIN.

    A Digital Link URI (``https://...``) is read by biip whatever the symbology. Content
    sent under a GS1 symbology is an element string; under EAN/UPC/ITF it is a GTIN.
    Without an identifier, 8, 12, 13 or 14 digits are a GTIN and anything else is tried as
    an element string.

    Raises:
        BarcodeError: not a GTIN, element string or Digital Link URI; a wrong check digit,
            a bad field, an SSCC whose company prefix length is unknown.
    """
    if content[:8].lower().startswith(DIGITAL_LINK_SCHEMES):
        return _digital_link(content, symbology)
    if symbology in GS1_SYMBOLOGIES:
        return _element_string(content, symbology)
    if symbology in GTIN_SYMBOLOGIES or (content.isdigit() and len(content) in GTIN_LENGTHS):
        return ItemScan(gtin=parse_gtin(content), symbology=symbology)
    if not content[:2].isdigit():
        raise BarcodeError(
            f"not a location label, command, GS1 item or Digital Link URI: starts with "
            f"{content[:16]!r}"
        )
    return _element_string(content, symbology)


def parse_item(content: str, symbology: str | None = None) -> ItemScan:
    """An item (``parse_label`` that refuses a pallet's SSCC).

    Raises:
        BarcodeError: as ``parse_label``, or the content is a pallet label.
    """
    scan = parse_label(content, symbology)
    if isinstance(scan, PalletScan):
        raise BarcodeError(f"SSCC {scan.sscc} is a logistic unit (a pallet), not an item")
    return scan


def parse_sscc(digits: str) -> PalletScan:
    """The pallet of an 18-digit SSCC, its check digit verified and its EPC URN built.

    Raises:
        BarcodeError: not 18 digits, a wrong check digit, or a GS1 prefix whose company
            prefix length biip does not know (its EPC cannot be told).
    """
    if not digits.isascii() or not digits.isdigit() or len(digits) != SSCC_LENGTH:
        raise BarcodeError(f"SSCC {digits[:24]!r} is not {SSCC_LENGTH} digits")
    try:
        sscc = Sscc.parse(digits)
    except ParseError as err:
        raise BarcodeError(f"SSCC {digits}: {err}") from err
    return _pallet(sscc, None)


def _pallet(sscc: Sscc, symbology: str | None) -> PalletScan:
    if not sscc.value.strip("0"):
        raise BarcodeError("SSCC is all zeros")
    if sscc.company_prefix is None:
        prefix = sscc.prefix.value if sscc.prefix is not None else sscc.value[1:4]
        raise BarcodeError(
            f"SSCC {sscc.value}: GS1 prefix {prefix} has no company prefix length "
            "(not a prefix SSCCs are issued under)"
        )
    length = len(sscc.company_prefix.value)
    try:
        epc: str = SSCC.from_gs1_element_string(f"(00){sscc.value}", length).epc_uri
    except ConvertException as err:
        raise BarcodeError(f"SSCC {sscc.value}: no EPC identity: {err}") from err
    return PalletScan(sscc=sscc.value, epc=epc, symbology=symbology)


def _digital_link(content: str, symbology: str | None) -> ItemScan | PalletScan:
    try:
        link = GS1DigitalLinkURI.parse(content, config=_GS1_CONFIG)
    except ParseError as err:
        raise BarcodeError(f"GS1 Digital Link URI: {err}") from err
    return _scan_of(link.element_strings, symbology)


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


def _element_string(content: str, symbology: str | None) -> ItemScan | PalletScan:
    try:
        message = GS1Message.parse(content, config=_GS1_CONFIG)
    except ParseError as err:
        raise BarcodeError(f"GS1 element string: {err}") from err
    return _scan_of(message.element_strings, symbology)


def _scan_of(elements: Iterable[GS1ElementString], symbology: str | None) -> ItemScan | PalletScan:
    fields: dict[str, GS1ElementString] = {}
    for element in elements:
        code = element.ai.ai
        if code in fields and fields[code].value != element.value:
            raise BarcodeError(f"GS1 element string: AI ({code}) appears twice")
        fields[code] = element
    if not fields:
        raise BarcodeError("GS1 element string holds no element")
    identity = fields.get("01") or fields.get("02")
    if identity is None:
        pallet = fields.get("00")
        if pallet is not None:
            if pallet.sscc is None:
                raise BarcodeError(f"GS1 AI (00): {pallet.sscc_error or 'not an SSCC'}")
            return _pallet(pallet.sscc, symbology)
        present = ", ".join(f"({code})" for code in fields)
        raise BarcodeError(
            f"GS1 element string has no GTIN, AI (01) or (02), nor SSCC, AI (00); it has {present}"
        )
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


def sscc_label(sscc: str) -> str:
    """The GS1 element string of a pallet label: AI 00 and the SSCC.

    Raises:
        BarcodeError: not an SSCC the edge takes.
    """
    return "00" + parse_sscc(sscc).sscc


def digital_link(element_string: str, domain: str | None = None) -> str:
    """The GS1 Digital Link URI of an element string (``gs1_item``, ``sscc_label``), as a
    QR code on a label would carry it (biip builds it; ``id.gs1.org`` unless ``domain``).

    Raises:
        BarcodeError: the element string does not parse.
    """
    try:
        message = GS1Message.parse(element_string, config=_GS1_CONFIG)
    except ParseError as err:
        raise BarcodeError(f"GS1 element string: {err}") from err
    link = GS1DigitalLinkURI.from_element_strings(message.element_strings)
    return link.as_uri(domain=domain)


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
    "DIGITAL_LINK_SCHEMES",
    "GS",
    "GS1_SYMBOLOGIES",
    "GTIN_SYMBOLOGIES",
    "LOCATION_PATTERN",
    "LOCATION_PREFIX",
    "MAX_LINE",
    "MAX_LOCATION",
    "MAX_QTY",
    "MODE_OF",
    "SSCC_LENGTH",
    "SYMBOLOGY_EAN8",
    "SYMBOLOGY_EAN13",
    "SYMBOLOGY_GS1_128",
    "SYMBOLOGY_GS1_DATAMATRIX",
    "SYMBOLOGY_GS1_QR",
    "SYMBOLOGY_QR",
    "BarcodeError",
    "Command",
    "CommandScan",
    "ItemScan",
    "LocationScan",
    "Mode",
    "PalletScan",
    "Scan",
    "command_barcode",
    "digital_link",
    "gs1_item",
    "location_label",
    "parse_barcode",
    "parse_gtin",
    "parse_item",
    "parse_label",
    "parse_location",
    "parse_sscc",
    "scan_line",
    "split_symbology",
    "sscc_label",
    "with_check_digit",
]
