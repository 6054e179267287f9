"""The barcode contract: labels, commands and GS1 items, parsed with biip, and the encoders."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.barcodes import (
    MAX_LINE,
    command_barcode,
    location_label,
    parse_barcode,
    scan_line,
    split_symbology,
)
from wire.gs1 import (
    GS,
    digital_link,
    gs1_item,
    parse_gtin,
    parse_item,
    sscc_label,
    with_check_digit,
)
from wire.scans import BarcodeError, Command, CommandScan, ItemScan, LocationScan, PalletScan

GTIN = "09506000016924"  # valid check digit 4
EAN13 = "5901234123457"
UPCA = "036000291452"
EAN8 = "96385074"
SSCC = "106141412345678908"
SSCC_EPC = "urn:epc:id:sscc:0614141.1234567890"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"]C101{GTIN}", ItemScan(GTIN, symbology="]C1")),
        (
            f"]C101{GTIN}1727053110AB12{GS}21S-1",
            ItemScan(GTIN, lot="AB12", expiry=date(2027, 5, 31), serial="S-1", symbology="]C1"),
        ),
        (
            f"]d201{GTIN}10LOT{GS}3012",
            ItemScan(GTIN, lot="LOT", qty=12, symbology="]d2"),
        ),
        (f"]Q301{GTIN}10X", ItemScan(GTIN, lot="X", symbology="]Q3")),
        # A logistic unit: SSCC, the GTIN of what it contains (02) and how many (37).
        (
            f"]C100106141411234567897{'02'}{GTIN}3748",
            ItemScan(GTIN, qty=48, symbology="]C1"),
        ),
        # Expiry day 00 means the end of the month (GS1 General Specifications).
        (f"01{GTIN}17280200", ItemScan(GTIN, expiry=date(2028, 2, 29))),
        (f"]E0{EAN13}", ItemScan("0" + EAN13, symbology="]E0")),
        (f"]E00{UPCA}", ItemScan("00" + UPCA, symbology="]E0")),
        (UPCA, ItemScan("00" + UPCA)),
        (f"]E4{EAN8}", ItemScan("000000" + EAN8, symbology="]E4")),
        (EAN8, ItemScan("000000" + EAN8)),  # digits only: a GTIN, not AI 96
        (GTIN, ItemScan(GTIN)),
        ("LOC:wh1.aisle.3", LocationScan("wh1.aisle.3")),
        ("]C0LOC:wh1.aisle.3.bin_2", LocationScan("wh1.aisle.3.bin_2")),
        ("CMD:COUNT", CommandScan(Command.COUNT)),
        ("]A0CMD:end", CommandScan(Command.END)),
        # A pallet: an SSCC alone (here with the ship-to AI 410), its EPC from biip's company
        # prefix length and epcpy.
        (
            f"]C100{SSCC}410{with_check_digit('061414100041')}",
            PalletScan(SSCC, SSCC_EPC, symbology="]C1"),
        ),
        (f"00{SSCC}", PalletScan(SSCC, SSCC_EPC)),
        # GS1 Digital Link URIs (QR codes), any domain, AIs in the path and the query.
        (
            f"]Q1https://id.gs1.org/00/{SSCC}",
            PalletScan(SSCC, SSCC_EPC, symbology="]Q1"),
        ),
        (
            f"]Q1https://brand.example/01/{GTIN}/10/L%2F1/21/S-1?17=270531",
            ItemScan(GTIN, lot="L/1", serial="S-1", expiry=date(2027, 5, 31), symbology="]Q1"),
        ),
        (f"HTTP://id.gs1.org/01/{GTIN}", ItemScan(GTIN)),
    ],
)
def test_scans_parse_to_typed_values(text: str, expected: object) -> None:
    assert parse_barcode(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("5901234123458", "check digit"),
        ("]E05901234123458", "check digit"),
        ("]C10109506000016925", r"AI \(01\).*check digit"),
        (f"01{GTIN}17240230", "17"),  # 30 February
        (f"01{GTIN}9", "GS1 element string"),
        ("]C110LOT", r"no GTIN, AI \(01\) or \(02\), nor SSCC, AI \(00\); it has \(10\)"),
        (f"01{GTIN}300", r"count 0 is outside"),
        (f"02{GTIN}3712{GS}3012", "both AI"),
        (f"01{GTIN}10A{GS}10B", r"AI \(10\) appears twice"),
        (f"01{GTIN}21S1{GS}305", "serialized item"),
        ("00000000", "all zeros"),
        ("]E4123", "GTIN"),
        ("]C1", "empty scan"),
        ("", "empty scan"),
        ("LOC:", "location label"),
        ("LOC:wh1..3", "location label"),
        ("LOC:wh1 aisle", "location label"),
        ("CMD:JUMP", "unknown command 'JUMP'"),
        ("hello", "not a location label, command, GS1 item or Digital Link URI"),
        ("]C100106141412345678900", r"AI \(00\).*check digit"),
        ("]C100020000000000000008", "no company prefix length"),
        ("]C140012345", r"nor SSCC, AI \(00\); it has \(400\)"),
        ("]Q1https://id.gs1.org/01/09506000016925", r"AI \(01\).*check digit"),
        ("]Q1https://id.gs1.org/", "Digital Link"),
        ("]Q1https://example.com/product/17", "Digital Link"),
    ],
)
def test_bad_scans_name_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(BarcodeError, match=reason):
        parse_barcode(text)


def test_symbology_ids_can_be_turned_off() -> None:
    assert split_symbology("]C1rest") == ("]C1", "rest")
    assert split_symbology("]1") == (None, "]1")
    with pytest.raises(BarcodeError, match="starts with"):
        parse_barcode(f"]E0{EAN13}", symbology_ids=False)


def test_prefixes_of_labels_and_commands_are_configurable() -> None:
    assert parse_barcode("@bin.7", location_prefix="@") == LocationScan("bin.7")
    assert parse_barcode("!PICK", command_prefix="!") == CommandScan(Command.PICK)


def test_parse_gtin_normalises_to_gtin14() -> None:
    assert parse_gtin(EAN13) == "0" + EAN13
    assert with_check_digit("950600001692") == "9506000016924"
    with pytest.raises(BarcodeError):
        with_check_digit("12")


def test_encoders_build_what_the_edge_reads() -> None:
    assert parse_barcode(location_label("wh1.aisle.3")) == LocationScan("wh1.aisle.3")
    assert parse_barcode(command_barcode(Command.MOVE)) == CommandScan(Command.MOVE)
    line = scan_line(gs1_item(GTIN, lot="L1"), symbology="]C1", prefix="\x02", suffix="#")
    assert line == f"\x02]C101{GTIN}10L1#\r".encode()
    with pytest.raises(BarcodeError, match="location"):
        location_label("not a location")
    with pytest.raises(BarcodeError, match="exceeds"):
        scan_line("9" * (MAX_LINE + 1))
    with pytest.raises(BarcodeError, match="GS1"):
        gs1_item(GTIN, lot="A" + GS + "B")
    assert sscc_label(SSCC) == f"00{SSCC}"
    assert digital_link(sscc_label(SSCC)) == f"https://id.gs1.org/00/{SSCC}"
    link = digital_link(gs1_item(GTIN, serial="7"), domain="brand.example")
    assert link == f"https://brand.example/01/{GTIN}/21/7"
    assert parse_barcode(link) == ItemScan(GTIN, serial="7")
    with pytest.raises(BarcodeError, match="18 digits"):
        sscc_label("12345")
    with pytest.raises(BarcodeError, match="a pallet"):
        parse_item(sscc_label(SSCC))


_CSET82 = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-./_",
    min_size=1,
    max_size=20,
)


@given(
    payload=st.text(alphabet="0123456789", min_size=13, max_size=13),
    lot=st.none() | _CSET82,
    serial=st.none() | _CSET82,
    expiry=st.none() | st.dates(min_value=date(2001, 1, 1), max_value=date(2049, 12, 31)),
    count=st.none() | st.integers(min_value=1, max_value=99_999_999),
)
def test_gs1_items_round_trip(
    payload: str, lot: str | None, serial: str | None, expiry: date | None, count: int | None
) -> None:
    gtin = with_check_digit(payload)
    if not gtin.strip("0") or (serial is not None and count not in (None, 1)):
        with pytest.raises(BarcodeError):
            gs1_item(gtin, lot=lot, serial=serial, expiry=expiry, count=count)
        return
    if count is not None and count > 1_000_000:
        with pytest.raises(BarcodeError, match="outside"):
            gs1_item(gtin, lot=lot, serial=serial, expiry=expiry, count=count)
        return
    text = gs1_item(gtin, lot=lot, serial=serial, expiry=expiry, count=count)
    assert parse_barcode("]C1" + text) == ItemScan(
        gtin, lot=lot, expiry=expiry, serial=serial, qty=count or 1, symbology="]C1"
    )
