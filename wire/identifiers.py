"""EPC identifiers: raw tag hex to URNs and URNs to GS1 keys, through epcpy.

The edge decodes each distinct EPC once (a bounded LRU cache keeps the hot path free of
repeated decoding). An EPC that is not a GS1 encoding epcpy knows travels as
``urn:epc:raw:{bits}.x{HEX}`` so nothing read is ever dropped for being foreign.
"""

from __future__ import annotations

import re
from functools import lru_cache

from epcpy import ConvertException, epc_pure_identity_to_scheme, hex_to_tag_encodable
from epcpy.epc_schemes import SGTIN
from epcpy.epc_schemes.sgtin import SGTINFilterValue

EPC_CACHE_SIZE = 65_536
MAX_EPC_HEX = 124
"""496 bits, the largest EPC bank a Gen2 tag can hold."""
_HEX = re.compile(r"^[0-9a-fA-F]+$")


class IdentifierError(ValueError):
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


@lru_cache(maxsize=EPC_CACHE_SIZE)
def gtin_of(urn: str) -> str | None:
    """The 14-digit GTIN of an SGTIN URN; None for any other kind of EPC."""
    if not urn.startswith("urn:epc:id:sgtin:"):
        return None
    try:
        scheme = epc_pure_identity_to_scheme(urn)
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
