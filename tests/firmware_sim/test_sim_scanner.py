"""The scanner simulator on a real pty: read with pyserial, parsed with biip; its faults
against the edge's serial scanner reader."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import biip
import pytest
import serial
from biip import ParseConfig

from edge.config import ScannerSettings
from edge.readers.serial_scanner import SerialScanner
from edge.readers.types import ReaderEvent, ScannerOutput, ScanRead
from firmware_sim.barcode_symbols import (
    ScannerStyle,
    Symbol,
    Terminator,
    demo_symbols,
    parse_terminator,
)
from firmware_sim.errors import SimConfigError
from firmware_sim.scanner import LONG_LINE_BYTES, ScannerError, ScannerSimulator
from wire.barcodes import MAX_LINE, parse_barcode
from wire.scans import Command, CommandScan, ItemScan, LocationScan

GTIN = "09506000134352"  # GS1's example GTIN-14
EAN13 = "4006381333931"
UPCA = "036000291452"
BIIP = ParseConfig(separator_chars=["\x1d"])
READ_S = 3.0


def read_exactly(port: serial.Serial, n: int) -> bytes:
    """``n`` bytes from the tty (bounded by the port's timeout per call, and a count)."""
    data = b""
    for _ in range(1000):
        if len(data) >= n:
            break
        data += port.read(n - len(data))
    return data


def read_line(port: serial.Serial, terminator: bytes = b"\r") -> bytes:
    data = b""
    for _ in range(10_000):
        chunk = port.read(1)
        if not chunk:
            break
        data += chunk
        if data.endswith(terminator):
            return data
    raise AssertionError(f"no terminated line, got {data!r}")


@pytest.fixture
async def scanner(tmp_path: Path) -> AsyncIterator[ScannerSimulator]:
    async with ScannerSimulator(
        tmp_path / "scanner-1", seed=1, style=ScannerStyle(char_rate=0)
    ) as s:
        yield s


# --- what a scan looks like on the wire ---------------------------------------------------


async def test_gs1_128_element_string_parses_with_biip(scanner: ScannerSimulator) -> None:
    symbol = Symbol.gs1(GTIN, lot="LOT-7", expiry=date(2027, 3, 31), serial="12345")
    with serial.Serial(scanner.port, timeout=READ_S) as port:
        sent = await scanner.scan(symbol)
        line = await asyncio.to_thread(read_line, port)
    assert line == sent
    assert line.startswith(b"]C101" + GTIN.encode() + b"17270331")
    assert b"\x1d" in line  # FNC1 after the variable-length lot
    result = biip.parse(line[:-1].decode("ascii"), config=BIIP)
    assert result.symbology_identifier is not None
    assert result.symbology_identifier.value == "]C1"
    assert result.gs1_message is not None
    values = {e.ai.ai: e.value for e in result.gs1_message.element_strings}
    assert values == {"01": GTIN, "17": "270331", "10": "LOT-7", "21": "12345"}


async def test_every_kind_of_barcode(scanner: ScannerSimulator) -> None:
    symbols = [
        Symbol.gs1(GTIN, count=24, lot="B1", datamatrix=True),
        Symbol.ean13(EAN13),
        Symbol.upca(UPCA),
        Symbol.location("wh1.aisle.3"),
        Symbol.command("count"),
        Symbol.command(Command.END),
    ]
    with serial.Serial(scanner.port, timeout=READ_S) as port:
        for symbol in symbols:
            await scanner.scan(symbol)
        lines = [await asyncio.to_thread(read_line, port) for _ in symbols]
    texts = [line[:-1].decode("ascii") for line in lines]
    assert [t[:3] for t in texts] == ["]d2", "]E0", "]E0", "]C0", "]C0", "]C0"]
    matrix = biip.parse(texts[0], config=BIIP)
    assert matrix.gs1_message is not None
    assert {e.ai.ai: e.value for e in matrix.gs1_message.element_strings} == {
        "01": GTIN,
        "10": "B1",
        "30": "24",
    }
    ean = biip.parse(texts[1])
    assert ean.gtin is not None
    assert ean.gtin.value == EAN13
    upc = biip.parse(texts[2])
    assert texts[2] == "]E00" + UPCA  # UPC-A as an EAN-13 with a leading zero
    assert upc.gtin is not None
    assert upc.gtin.as_gtin_12() == UPCA
    parsed = [parse_barcode(t) for t in texts]
    assert parsed[0] == ItemScan(GTIN, lot="B1", qty=24, symbology="]d2")
    assert parsed[3] == LocationScan("wh1.aisle.3")
    assert parsed[4:] == [CommandScan(Command.COUNT), CommandScan(Command.END)]


@pytest.mark.parametrize("terminator", list(Terminator))
async def test_prefix_suffix_terminator_and_no_aim_ids(
    tmp_path: Path, terminator: Terminator
) -> None:
    style = ScannerStyle(prefix="\x02", suffix="#", terminator=terminator, aim_ids=False)
    async with ScannerSimulator(tmp_path / "s", style=style) as sim:
        with serial.Serial(sim.port, timeout=READ_S) as port:
            await sim.scan(Symbol.ean13(EAN13))
            line = await asyncio.to_thread(read_line, port, terminator.value.encode())
    assert line == b"\x02" + EAN13.encode() + b"#" + terminator.value.encode()


async def test_lines_are_typed_at_a_bounded_rate(tmp_path: Path) -> None:
    async with ScannerSimulator(tmp_path / "s", style=ScannerStyle(char_rate=200)) as sim:
        with serial.Serial(sim.port, timeout=READ_S) as port:
            started = time.monotonic()
            line = await sim.scan(Symbol.location("wh1.aisle.3"))  # 19 characters
            took = time.monotonic() - started
            assert await asyncio.to_thread(read_line, port) == line
    assert took >= (len(line) - 2) / 200  # never faster than the rate allows


async def test_play_leaves_human_pauses(tmp_path: Path) -> None:
    gtins = [GTIN, "00614141000012"]
    symbols = demo_symbols(gtins)
    async with ScannerSimulator(
        tmp_path / "s", seed=3, gap_s=(0.02, 0.04), style=ScannerStyle(char_rate=0)
    ) as sim:
        with serial.Serial(sim.port, timeout=READ_S) as port:
            started = time.monotonic()
            lines = await sim.play(symbols)
            took = time.monotonic() - started
            got = [await asyncio.to_thread(read_line, port) for _ in symbols]
    assert got == lines == sim.sent
    assert took >= 0.02 * (len(symbols) - 1)
    scans = [parse_barcode(line[:-1].decode()) for line in got]
    assert scans[0] == CommandScan(Command.RECEIVE)
    assert isinstance(scans[2], ItemScan)
    assert scans[2].serial == "1"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Symbol.ean13("4006381333932"),  # wrong check digit
        lambda: Symbol.ean13("10614141000019"),  # indicator 1: not an EAN-13
        lambda: Symbol.upca(EAN13),
        lambda: Symbol.location("no spaces allowed"),
        lambda: Symbol.command("DANCE"),
        lambda: Symbol.gs1(GTIN, lot="x" * 21),
        lambda: ScannerStyle(prefix="é"),
        lambda: parse_terminator("semicolon"),
    ],
)
def test_impossible_barcodes_are_refused(make: object) -> None:
    with pytest.raises(SimConfigError):
        make()  # type: ignore[operator]


# --- faults, read with pyserial ----------------------------------------------------------


async def test_fault_bytes_on_the_wire(scanner: ScannerSimulator) -> None:
    with serial.Serial(scanner.port, timeout=READ_S) as port:
        garbage = await scanner.inject("garbage", size=32)
        assert await asyncio.to_thread(read_exactly, port, 32) == garbage
        assert not {b"\r"[0], b"\n"[0]} & set(garbage)
        partial = await scanner.inject("partial_line", fraction=0.5)
        assert await asyncio.to_thread(read_exactly, port, len(partial)) == partial
        assert partial == b"]E040063"  # half of "]E04006381333931", no terminator
        long = await scanner.inject("long_line")
        got = await asyncio.to_thread(read_exactly, port, len(long))
    assert got == long
    assert len(long) == LONG_LINE_BYTES + 1 > MAX_LINE * 10
    assert [kind for _, kind, _ in scanner.faults] == ["garbage", "partial_line", "long_line"]
    with pytest.raises(SimConfigError, match="unknown scanner fault"):
        await scanner.inject("sneeze")
    with pytest.raises(SimConfigError, match="size = 0"):
        await scanner.inject("garbage", size=0)


async def test_unplug_and_replug_behind_the_same_link(scanner: ScannerSimulator) -> None:
    link = scanner.link
    assert link is not None
    assert link.is_symlink()
    before = os.readlink(link)
    port = serial.Serial(scanner.port, timeout=0.5)
    try:
        task = asyncio.create_task(scanner.inject("unplug", delay_s=0.3))
        await asyncio.sleep(0.1)
        assert not link.exists()  # the device is gone while unplugged
        # A hung-up tty: pyserial says the device is ready to read but returns nothing.
        with pytest.raises((serial.SerialException, OSError)):
            await asyncio.to_thread(port.read, 1)
        await task
    finally:
        port.close()
    assert scanner.plugs == 2
    assert link.is_symlink()
    with serial.Serial(str(link), timeout=READ_S) as again:
        await scanner.scan(Symbol.command(Command.END))
        assert await asyncio.to_thread(read_line, again) == b"]C0CMD:END\r"
    assert os.readlink(link) == scanner.path  # (pts numbers are reused: it may equal before)
    assert before.startswith("/dev/pts/")


async def test_writing_to_an_unplugged_scanner_is_an_error(tmp_path: Path) -> None:
    sim = ScannerSimulator(tmp_path / "s")
    with pytest.raises(ScannerError, match="unplugged"):
        await sim.scan(Symbol.ean13(EAN13))
    with pytest.raises(ScannerError, match="unplugged"):
        _ = sim.path


# --- faults against the edge's serial scanner reader ---------------------------------------


def edge_settings(sim: ScannerSimulator) -> ScannerSettings:
    return ScannerSettings(
        name="handheld-1",
        port=sim.port,
        read_point="wh1.aisle.3",
        line_timeout_s=0.3,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )


async def take(reader: SerialScanner, n: int, what: str) -> list[ScannerOutput]:
    """The next ``n`` outputs that are not state changes (bounded in time and count)."""
    got: list[ScannerOutput] = []
    async with asyncio.timeout(5):
        async for item in reader:
            if isinstance(item, ReaderEvent) and item.kind == "state":
                continue
            got.append(item)
            if len(got) == n:
                return got
    raise AssertionError(f"reader stopped before {what}")


async def until_connected(reader: SerialScanner, times: int = 1) -> list[ScannerOutput]:
    seen: list[ScannerOutput] = []
    connected = 0
    async with asyncio.timeout(5):
        async for item in reader:
            seen.append(item)
            if isinstance(item, ReaderEvent) and item.state == "connected":
                connected += 1
                if connected == times:
                    return seen
    raise AssertionError("the scanner reader never connected")


async def test_the_edge_reports_each_fault_and_keeps_reading(scanner: ScannerSimulator) -> None:
    good = Symbol.gs1(GTIN, serial="77")
    async with SerialScanner(edge_settings(scanner)) as reader:
        await until_connected(reader)
        await scanner.scan(good)
        (first,) = await take(reader, 1, "a good scan")
        assert isinstance(first, ScanRead)
        assert first.scan == ItemScan(GTIN, serial="77", symbology="]C1")

        # Noise without a terminator spoils the line it runs into; the next one is fine.
        await scanner.inject("garbage", size=16)
        await scanner.scan(good)
        await scanner.scan(Symbol.location("wh1.aisle.4"))
        spoiled, after = await take(reader, 2, "garbage, then a scan")
        assert isinstance(spoiled, ReaderEvent)
        assert spoiled.kind == "decode_error"
        assert isinstance(after, ScanRead)
        assert after.scan == LocationScan("wh1.aisle.4")

        # A partial line is reported when it stays quiet, never taken as a scan.
        await scanner.inject("partial_line")
        (cut,) = await take(reader, 1, "the partial line")
        assert isinstance(cut, ReaderEvent)
        assert cut.kind == "decode_error"
        assert "partial line" in cut.detail

        # A line longer than any barcode is reported and skipped; framing goes on.
        await scanner.inject("long_line")
        await scanner.scan(Symbol.command(Command.COUNT))
        overlong, command = await take(reader, 2, "the long line, then a command")
        assert isinstance(overlong, ReaderEvent)
        assert overlong.kind == "decode_error"
        assert str(LONG_LINE_BYTES) in overlong.detail
        assert isinstance(command, ScanRead)
        assert command.scan == CommandScan(Command.COUNT)

        # Unplugged and back: the reader reopens the same link and reads again.
        await scanner.inject("unplug", delay_s=0.3)
        outputs = await until_connected(reader)
        states = [o.state for o in outputs if isinstance(o, ReaderEvent) and o.kind == "state"]
        assert "disconnected" in states
        await scanner.scan(good)
        (again,) = await take(reader, 1, "a scan after the replug")
        assert isinstance(again, ScanRead)
        assert reader.malformed == 3
