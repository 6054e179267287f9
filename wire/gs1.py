"""GS1 barcode content through biip and epcpy: element strings, Digital Link URIs, GTINs and
SSCCs, read into typed scans and built back for the simulator. No I/O.

An item is a GS1 element string (AI 01 or 02 GTIN, 10 lot, 17 expiry, 21 serial, 30 or 37
count; a variable-length field is ended by FNC1, sent as the group separator ``GS`` 0x1D)
or a bare EAN-13, UPC-A, EAN-8 or GTIN-14, which becomes a GTIN-14. A logistic unit (a
pallet) is an element string whose identity is an SSCC, AI 00, and no GTIN (a label with
AI 02 + 37 names its contents itself and is an item scan of that count). A GS1 Digital Link
URI (``https://id.gs1.org/01/09506000134352/21/S1``, any domain, or ``.../00/<SSCC>``) is
accepted wherever an element string is: the same AIs, carried in the path and query, mean
the same.

Parsing is biip's (element strings, Digital Link URIs, the company prefix length of an
SSCC) and epcpy's (the SSCC's EPC pure identity); this module only decides which of their
answers applies and turns it into ``wire.scans`` values. A GTIN whose check digit is wrong,
a date that does not exist, an unknown AI, a count of zero: each is a ``BarcodeError``
whose message names what was wrong.

The encoders (``with_check_digit``, ``gs1_item``, ``sscc_label``, ``digital_link``) build
what a label carries; every encoder's output parses back to its input.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Final

from biip import ParseConfig, ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.sscc import Sscc
from epcpy import ConvertException
from epcpy.epc_schemes.sscc import SSCC

from wire.scans import (
    GS1_SYMBOLOGIES,
    GTIN_SYMBOLOGIES,
    MAX_QTY,
    SYMBOLOGY_GS1_128,
    BarcodeError,
    ItemScan,
    PalletScan,
)

GS: Final = "\x1d"
"""FNC1 inside a GS1 element string: ends a variable-length field."""
GTIN_LENGTHS: Final = frozenset({8, 12, 13, 14})
SSCC_LENGTH: Final = 18
DIGITAL_LINK_SCHEMES: Final = ("https://", "http://")
"""What starts a GS1 Digital Link URI (biip parses the rest)."""
MAX_FIELD: Final = 20
"""GS1 lot (AI 10) and serial (AI 21) are at most 20 characters."""

_GS1_CONFIG: Final = ParseConfig(separator_chars=(GS,))


# --- parsing ------------------------------------------------------------------------------


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


# --- encoding (what a label carries) -------------------------------------------------------


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


__all__ = [
    "DIGITAL_LINK_SCHEMES",
    "GS",
    "GTIN_LENGTHS",
    "MAX_FIELD",
    "SSCC_LENGTH",
    "digital_link",
    "gs1_item",
    "parse_gtin",
    "parse_item",
    "parse_label",
    "parse_sscc",
    "sscc_label",
    "with_check_digit",
]
