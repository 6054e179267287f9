"""EPC identifiers: raw tag hex to URNs and URNs to GS1 keys, through epcpy.

The edge decodes each distinct EPC once (a bounded LRU cache keeps the hot path free of
repeated decoding). An EPC that is not a GS1 encoding epcpy knows travels as
``urn:epc:raw:{bits}.x{HEX}`` so nothing read is ever dropped for being foreign.
"""

from __future__ import annotations

import re
from functools import lru_cache

from biip import ParseError
from biip.gtin import Gtin
from epcpy import ConvertException, epc_pure_identity_to_scheme, hex_to_tag_encodable
from epcpy.epc_schemes import SGTIN
from epcpy.epc_schemes.sgtin import SGTIN_REGEX, SGTINFilterValue
from epcpy.utils.common import replace_uri_escapes, verify_gs3a3_component

from wire.errors import WireError

EPC_CACHE_SIZE = 65_536
SGTIN_URN_PREFIX = "urn:epc:id:sgtin:"
MAX_SGTIN_SERIAL = 20
"""Characters in an SGTIN serial (TDS); epcpy checks the same."""
_DIGITS_SGTIN = re.compile(
    rf"{re.escape(SGTIN_URN_PREFIX)}[0-9]+\.[0-9]+\.[0-9]{{1,{MAX_SGTIN_SERIAL}}}"
)
"""An SGTIN URN of ASCII digits only, with a serial of at most ``MAX_SGTIN_SERIAL``."""
MAX_EPC_HEX = 124
"""496 bits, the largest EPC bank a Gen2 tag can hold."""
_HEX = re.compile(r"^[0-9a-fA-F]+$")


class IdentifierError(WireError):
    """An identifier that is not well formed."""


def raw_urn(epc_hex: str) -> str:
    """The ``urn:epc:raw`` form of tag bits that are not (or not known to be) GS1."""
    return f"urn:epc:raw:{len(epc_hex) * 4}.x{epc_hex.upper()}"


@lru_cache(maxsize=EPC_CACHE_SIZE)
def epc_urn(epc_hex: str) -> str:
    """The pure-identity URN of a tag's EPC bank, or its raw URN when it is not GS1.

    Raises:
        IdentifierError: the input is not hex or is longer than any EPC bank.
    """
    if not epc_hex or len(epc_hex) > MAX_EPC_HEX or not _HEX.match(epc_hex):
        raise IdentifierError(f"EPC must be 1..{MAX_EPC_HEX} hex digits, got {epc_hex[:40]!r}")
    try:
        uri: str = hex_to_tag_encodable(epc_hex.upper()).epc_uri
    except (ConvertException, ValueError, KeyError, IndexError, AttributeError):
        return raw_urn(epc_hex)
    return uri


def gtin_of(urn: str) -> str | None:
    """The 14-digit GTIN of an SGTIN URN; None for any other kind of EPC.

    Every unit of a product has its own serial, so the GTIN is decoded (and cached) once
    per company prefix and item reference. Each URN is held to epcpy's own SGTIN checks
    (the URN pattern, GS3A3 characters, 1..20 serial characters): by epcpy itself, or, for
    a URN of ASCII digits only, by one pattern that admits nothing epcpy refuses.
    """
    if not urn.startswith(SGTIN_URN_PREFIX):
        return None
    company, _, rest = urn[len(SGTIN_URN_PREFIX) :].partition(".")
    item_reference, dot, serial = rest.partition(".")
    # The common URN is ASCII digits throughout: it matches epcpy's pattern by
    # construction, and a digit is a GS3A3 character that needs no escape.
    digits = _DIGITS_SGTIN.fullmatch(urn) is not None
    if not dot or (not digits and SGTIN_REGEX.fullmatch(urn) is None):
        return None
    gtin = _class_gtin(company, item_reference)
    if gtin is None or digits:
        return gtin
    try:
        verify_gs3a3_component(serial)
    except ConvertException:
        return None
    if not 1 <= len(replace_uri_escapes(serial)) <= MAX_SGTIN_SERIAL:
        return None
    return gtin


@lru_cache(maxsize=EPC_CACHE_SIZE)
def _class_gtin(company: str, item_reference: str) -> str | None:
    try:
        scheme = epc_pure_identity_to_scheme(f"{SGTIN_URN_PREFIX}{company}.{item_reference}.0")
    except (ConvertException, ValueError, KeyError, IndexError, AttributeError):
        return None
    if not isinstance(scheme, SGTIN):
        return None
    gtin: str = scheme.gtin()
    return gtin


def sgtin96_hex(urn: str, filter_value: int = 1) -> str:
    """Encode an SGTIN pure-identity URN as SGTIN-96 tag hex (for simulators and tests).

    Raises:
        IdentifierError: the URN is not an SGTIN that fits 96 bits.
    """
    try:
        sgtin = SGTIN.from_epc_uri(urn)
        out: str = sgtin.hex(
            binary_coding_scheme=SGTIN.BinaryCodingScheme.SGTIN_96,
            filter_value=SGTINFilterValue(str(filter_value)),
        )
    except (ConvertException, ValueError, KeyError) as err:
        raise IdentifierError(f"cannot encode {urn!r} as SGTIN-96: {err}") from err
    return out.lower()


@lru_cache(maxsize=EPC_CACHE_SIZE)
def sgtin_urn(gtin: str, serial: str) -> str | None:
    """The SGTIN pure identity of a GTIN and a serial number (a GS1 label with AI 21), or
    None when the GTIN's company prefix length is not known (biip's GS1 table) or the
    serial is not one an EPC can carry (epcpy)."""
    try:
        prefix = Gtin.parse(gtin).company_prefix
    except ParseError:
        return None
    if prefix is None:
        return None
    try:
        sgtin = SGTIN.from_gs1_element_string(
            f"(01){gtin}(21){serial}", company_prefix_length=len(prefix.value)
        )
    except (ConvertException, ValueError, KeyError, IndexError):
        return None
    uri: str = sgtin.epc_uri
    return uri
