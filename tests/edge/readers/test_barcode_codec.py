"""The sans-I/O scanner codec: bounded line framing and parsing a line with scanner settings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import ScannerSettings
from edge.readers.barcode import (
    MAX_LINE,
    LineFramer,
    MalformedScan,
    Overlong,
    parse_scan,
    strip_controls,
)
from wire.gs1 import GS
from wire.scans import Command, CommandScan, ItemScan, LocationScan

GTIN = "09506000016924"


def scanner(**extra: Any) -> ScannerSettings:
    values: dict[str, Any] = {"name": "hand-1", "port": "/dev/ttyACM0", "read_point": "wh1.a"}
    values.update(extra)
    return ScannerSettings(**values)


def test_any_line_end_frames_lines() -> None:
    framer = LineFramer()
    assert framer.feed(b"one\rtwo\nthree\r\nfour") == [b"one", b"two", b"three"]
    assert framer.pending
    assert framer.feed(b"\r\n\r\n\n") == [b"four"]  # empty lines are not scans
    assert not framer.pending


def test_a_line_split_anywhere_comes_out_whole() -> None:
    stream = b"LOC:wh1.a\r\n]C101" + GTIN.encode() + b"10L\x1d21S\r\n"
    for cut in range(len(stream) + 1):
        framer = LineFramer()
        lines = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert lines == [b"LOC:wh1.a", b"]C101" + GTIN.encode() + b"10L\x1d21S"], cut
    framer = LineFramer()
    one_by_one = [frame for byte in stream for frame in framer.feed(bytes([byte]))]
    assert one_by_one == [b"LOC:wh1.a", b"]C101" + GTIN.encode() + b"10L\x1d21S"]


@pytest.mark.parametrize(
    ("terminator", "stream", "lines"),
    [
        (b"\t", b"a\tb\rc\t", [b"a", b"b\rc"]),
        (b"\x03", b"\x02a\x03\x02b\x03", [b"\x02a", b"\x02b"]),
        (b"\r\n", b"a\r\nb\nc\r", [b"a", b"b"]),
    ],
)
def test_a_configured_terminator_ends_lines(
    terminator: bytes, stream: bytes, lines: list[bytes]
) -> None:
    framer = LineFramer(terminator)
    assert framer.feed(stream) == lines


def test_an_overlong_line_is_skipped_to_its_end_and_reported() -> None:
    framer = LineFramer(max_line=16)
    frames = framer.feed(b"x" * 10)
    frames += framer.feed(b"y" * 1000)
    frames += framer.feed(b"z" * 5000 + b"\rLOC:wh1.b\r")
    assert len(frames) == 2
    overlong, good = frames
    assert isinstance(overlong, Overlong)
    assert overlong.length == 6010
    assert overlong.head == b"x" * 10 + b"y" * 22
    error = overlong.error()
    assert "6010 bytes exceeds the 16-byte limit" in str(error)
    assert good == b"LOC:wh1.b"


def test_a_line_of_exactly_max_line_is_kept() -> None:
    framer = LineFramer(max_line=MAX_LINE)
    assert framer.feed(b"9" * MAX_LINE + b"\n") == [b"9" * MAX_LINE]
    framer = LineFramer(b"\r\n", max_line=4)
    assert framer.feed(b"abcd\r\nabcde\r\n") == [b"abcd", Overlong(b"abcde", 5, 4)]


def test_discard_returns_the_partial_line() -> None:
    framer = LineFramer()
    framer.feed(b"]E0590123")
    assert framer.discard() == b"]E0590123"
    assert framer.discard() is None
    assert not framer.pending


def test_framer_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="empty"):
        LineFramer(b"")
    with pytest.raises(ValueError, match="max_line"):
        LineFramer(max_line=0)


def test_control_characters_are_stripped_but_gs() -> None:
    assert strip_controls(b"\x00a\x1d\x7fb\x1bc\x02") == b"a\x1dbc"


@pytest.mark.parametrize(
    ("line", "expected", "extra"),
    [
        (b"]C101" + GTIN.encode() + b"10L7\x1d3005", ItemScan(GTIN, "L7", qty=5, symbology="]C1"),
         {}),
        (b"\x00LOC:wh1.b\x00", LocationScan("wh1.b"), {}),
        (b"\x02CMD:PICK\x03", CommandScan(Command.PICK), {"prefix": "\x02", "suffix": "\x03"}),
        (b"<<]E05901234123457>>", ItemScan("05901234123457", symbology="]E0"),
         {"prefix": "<<", "suffix": ">>"}),
        (b"#bin.4", LocationScan("bin.4"), {"location_prefix": "#"}),
    ],
)  # fmt: skip
def test_lines_parse_with_the_scanner_settings(
    line: bytes, expected: object, extra: dict[str, Any]
) -> None:
    assert parse_scan(line, scanner(**extra)) == expected


@pytest.mark.parametrize(
    ("line", "reason", "extra"),
    [
        (b"\x00\x01\x7f", "only control characters", {}),
        (b"LOC:wh1.\xe9", "non-ASCII byte 0xe9 at position 8", {}),
        (b"CMD:PICK", "missing the prefix '<<'", {"prefix": "<<"}),
        (b"<<CMD:PICK", "missing the suffix '>>'", {"prefix": "<<", "suffix": ">>"}),
        (b"5901234123458", "check digit", {}),
        (b"]C1" + GTIN.encode() + b"\x1d", "GS1", {}),
    ],
)
def test_malformed_lines_say_why_and_keep_the_bytes(
    line: bytes, reason: str, extra: dict[str, Any]
) -> None:
    with pytest.raises(MalformedScan) as caught:
        parse_scan(line, scanner(**extra))
    assert reason in caught.value.reason
    assert caught.value.data == line
    assert repr(line)[:20] in str(caught.value)


def test_scanner_settings_bound_the_framing() -> None:
    with pytest.raises(ValueError, match="terminator must be control characters"):
        scanner(terminator="#")
    with pytest.raises(ValueError, match="terminator must be control characters"):
        scanner(terminator=GS)
    with pytest.raises(ValueError, match="ASCII"):
        scanner(prefix="é")
    with pytest.raises(ValueError, match="must differ"):
        scanner(location_prefix="X:", command_prefix="X:")
    with pytest.raises(ValueError, match="max_line"):
        scanner(max_line=100_000)


GOOD = b"]C101" + GTIN.encode() + b"10LOT\x1d21SER"
GOOD_SCAN = ItemScan(GTIN, lot="LOT", serial="SER", symbology="]C1")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    garbage=st.binary(max_size=2000),
    chunk=st.integers(min_value=1, max_value=700),
    max_line=st.integers(min_value=len(GOOD), max_value=600),
    terminator=st.sampled_from([None, b"\r\n", b"\x03"]),
)
def test_garbage_never_raises_but_malformed_and_never_hides_the_next_line(
    garbage: bytes, chunk: int, max_line: int, terminator: bytes | None
) -> None:
    end = terminator or b"\r"
    stream = garbage + end + GOOD + end
    config = scanner(terminator=terminator.decode() if terminator else None, max_line=max_line)
    framer = LineFramer(terminator, max_line)
    frames: list[bytes | Overlong] = []
    for start in range(0, len(stream), chunk):
        frames += framer.feed(stream[start : start + chunk])
    assert not framer.pending
    scans = []
    reasons: list[str] = []
    for frame in frames:
        if isinstance(frame, Overlong):
            assert frame.length > max_line
            assert len(frame.head) <= 32
            continue
        assert len(frame) <= max_line
        try:
            scans.append(parse_scan(frame, config))
        except MalformedScan as err:
            reasons.append(err.reason)
    assert scans[-1] == GOOD_SCAN
    assert all(reasons)
