"""EPC decoding through epcpy: every GS1 scheme the edge meets, from known tag hex."""

from __future__ import annotations

import pytest
from epcpy import ConvertException
from epcpy.epc_schemes import SGTIN

from wire.identifiers import EPC_CACHE_SIZE, IdentifierError, epc_urn, gtin_of, raw_urn

# SGTIN, SSCC, GRAI, GIAI and GID: the 96-bit examples of the GS1 EPC Tag Data Standard;
# SGLN: its 96-bit encoding of urn:epc:id:sgln:0614141.12345.400.
KNOWN = [
    ("3074257bf7194e4000001a85", "urn:epc:id:sgtin:0614141.812345.6789"),
    ("3174257bf4499602d2000000", "urn:epc:id:sscc:0614141.1234567890"),
    ("3374257bf40c0e4000000190", "urn:epc:id:grai:0614141.12345.400"),
    ("3474257bf40000000000162e", "urn:epc:id:giai:0614141.5678"),
    ("3274257bf460720000000190", "urn:epc:id:sgln:0614141.12345.400"),
    ("350007ab70425d4000000586", "urn:epc:id:gid:31415.271828.1414"),
]


@pytest.mark.parametrize(("epc_hex", "urn"), KNOWN)
def test_each_gs1_scheme_decodes_to_its_pure_identity(epc_hex: str, urn: str) -> None:
    assert epc_urn(epc_hex) == urn
    assert epc_urn(epc_hex.upper()) == urn


@pytest.mark.parametrize(
    "epc_hex",
    [
        "e2801160600002054cd4a36b",  # a chip's TID-like serial, not a GS1 header
        "e2801160600002054cd4a36b00001234",  # 128 bits
        "ab",  # 8 bits
        "f" * 124,  # 496 bits, the largest EPC bank
    ],
)
def test_epcs_of_any_length_that_are_not_gs1_travel_as_raw_hex(epc_hex: str) -> None:
    assert epc_urn(epc_hex) == raw_urn(epc_hex)
    assert epc_urn(epc_hex).startswith(f"urn:epc:raw:{len(epc_hex) * 4}.x")


@pytest.mark.parametrize("bad", ["", "xyz", "f" * 125, "30 74"])
def test_what_is_not_an_epc_bank_is_refused(bad: str) -> None:
    with pytest.raises(IdentifierError):
        epc_urn(bad)


def test_decoding_is_cached_and_bounded() -> None:
    info = epc_urn.cache_info()
    assert info.maxsize == EPC_CACHE_SIZE
    epc_urn("3074257bf7194e4000001a85")
    hits = epc_urn.cache_info().hits
    epc_urn("3074257bf7194e4000001a85")
    assert epc_urn.cache_info().hits == hits + 1


@pytest.mark.parametrize(
    "urn",
    [
        "urn:epc:id:sgtin:0614141.812345.6789",
        "urn:epc:id:sgtin:0614141.812345.A%2Fb-c",  # an escaped character in the serial
        "urn:epc:id:sgtin:0614141.812345.1.2",  # a dot is a serial character
        "urn:epc:id:sgtin:0614141.812345.123456789012345678901",  # 21 characters
        "urn:epc:id:sgtin:0614141.812345.12345678901234567890",  # 20 digits
        "urn:epc:id:sgtin:0614141.812345.0",
        "urn:epc:id:sgtin:0614141.812345.007",  # leading zeros
        "urn:epc:id:sgtin:0614141.812345.\u0661\u0662",  # digits, but not ASCII ones
        "urn:epc:id:sgtin:0614141.812345.",  # no serial
        "urn:epc:id:sgtin:0614141.812345.a#b",  # not a GS3A3 character
        "urn:epc:id:sgtin:0614141.81234.6789",  # prefix and reference are 12 digits
        "urn:epc:id:sgtin:0614141.812345",  # no serial part at all
        "urn:epc:id:sscc:0614141.1234567890",
    ],
)
def test_gtin_of_agrees_with_epcpy_on_every_urn(urn: str) -> None:
    # gtin_of decodes once per product and checks each serial; the answer must be
    # epcpy's own, valid serial or not.
    try:
        expected = SGTIN(urn).gtin()
    except ConvertException:
        expected = None
    assert gtin_of(urn) == expected
