"""SerialScanner on a real tty (a pseudo-terminal): scans, malformed lines, unplug and replug."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from edge.config import ScannerSettings
from edge.readers.serial_scanner import SerialScanner
from edge.readers.types import ReaderEvent, ScanRead, StateChanged
from tests.edge.scanner_pty import next_output, outputs, pty_scanner, until_state
from wire.scans import Command, CommandScan, ItemScan, LocationScan

GTIN = "09506000016924"


def config(path: Path, **extra: Any) -> ScannerSettings:
    values: dict[str, Any] = {
        "name": "hand-1",
        "port": str(path),
        "read_point": "wh1.aisle.3",
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    values.update(extra)
    return ScannerSettings(**values)


async def test_scans_arrive_typed_and_status_says_serial(tmp_path: Path) -> None:
    path = tmp_path / "scanner"
    with pty_scanner(path) as device:
        async with SerialScanner(config(path)) as scanner:
            await until_state(scanner, "connected")
            device.send(b"LOC:wh1.aisle.3.bin.1\r\n]C101" + GTIN.encode() + b"10L1\x1d21S9\r")
            device.send(b"CMD:COUNT\n")
            got = await outputs(scanner, 3)
            status = scanner.status()
    assert all(isinstance(item, ScanRead) for item in got)
    scans = [item.scan for item in got if isinstance(item, ScanRead)]
    assert scans == [
        LocationScan("wh1.aisle.3.bin.1"),
        ItemScan(GTIN, lot="L1", serial="S9", symbology="]C1"),
        CommandScan(Command.COUNT),
    ]
    assert {item.reader for item in got} == {"hand-1"}
    assert (status.name, status.kind, status.state) == ("hand-1", "serial", "connected")
    assert scanner.scans == 3


async def test_a_malformed_scan_is_reported_logged_and_the_next_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "scanner"
    with pty_scanner(path) as device, caplog.at_level(logging.WARNING):
        async with SerialScanner(config(path, max_line=64)) as scanner:
            await until_state(scanner, "connected")
            device.send(b"5901234123458\r")  # wrong check digit
            device.send(b"\xff\xfe garbage \x00\r")
            device.send(b"9" * 500 + b"\r")  # over max_line
            device.send(b"]E05901234123457\r")
            got = await outputs(scanner, 4)
            status = scanner.status()
    errors = [item for item in got if isinstance(item, ReaderEvent)]
    assert [e.kind for e in errors] == ["decode_error"] * 3
    assert all(e.reader == "hand-1" for e in errors)
    assert "check digit" in errors[0].detail
    assert "b'5901234123458'" in errors[0].detail
    assert "non-ASCII byte 0xff" in errors[1].detail
    assert "500 bytes exceeds the 64-byte limit" in errors[2].detail
    last = got[3]
    assert isinstance(last, ScanRead)
    assert (last.scan, last.raw) == (
        ItemScan("05901234123457", symbology="]E0"),
        b"]E05901234123457",
    )
    assert scanner.malformed == 3
    assert status.last_error is not None
    assert "exceeds" in status.last_error
    logged = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(logged) == 3
    assert all(m.startswith("scanner hand-1: ") for m in logged)
    assert "b'5901234123458'" in logged[0]


async def test_a_line_without_terminator_is_dropped_after_the_line_timeout(tmp_path: Path) -> None:
    path = tmp_path / "scanner"
    with pty_scanner(path) as device:
        async with SerialScanner(config(path, line_timeout_s=0.2)) as scanner:
            await until_state(scanner, "connected")
            device.send(b"]E0590123")  # a scan cut off: never taken as a (wrong) GTIN
            event = await next_output(scanner)
            device.send(b"LOC:wh1.b\r")
            after = await next_output(scanner)
    assert isinstance(event, ReaderEvent)
    assert event.kind == "decode_error"
    assert "partial line without a terminator for 0.2 s" in event.detail
    assert isinstance(after, ScanRead)
    assert after.scan == LocationScan("wh1.b")


async def test_unplug_and_replug_is_picked_up_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "scanner"
    with pty_scanner(path) as device, caplog.at_level(logging.INFO):
        async with SerialScanner(config(path)) as scanner:
            await until_state(scanner, "connected")
            device.send(b"LOC:wh1.a\r")
            first = await next_output(scanner)
            device.send(b"LOC:wh1.half")  # the cable goes mid-scan
            await asyncio.sleep(0.05)
            device.unplug()
            cut = await next_output(scanner)
            gone = await until_state(scanner, "disconnected")
            await asyncio.sleep(0.5)  # several reopen attempts against a missing path
            assert scanner.status().state == "disconnected"
            device.plug()
            await until_state(scanner, "connected")
            device.send(b"LOC:wh1.b\r")
            second = await next_output(scanner)
    assert isinstance(first, ScanRead)
    assert first.scan == LocationScan("wh1.a")
    assert isinstance(cut, ReaderEvent)
    assert "partial line cut off when the port closed" in cut.detail
    assert str(path) in gone.detail
    assert isinstance(second, ScanRead)
    assert second.scan == LocationScan("wh1.b")
    states = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scanner hand-1")]
    # Quiet while unplugged: one line per change of state, not one per retry.
    assert sum("disconnected" in m for m in states) == 1
    assert sum(": connected" in m for m in states) == 2


async def test_a_port_that_is_not_a_tty_is_an_error_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "not-a-tty"
    path.write_text("")
    async with SerialScanner(config(path)) as scanner:
        event = await until_state(scanner, "error")
        assert scanner.status().state == "error"
    assert str(path) in event.detail


async def test_stop_ends_the_iteration(tmp_path: Path) -> None:
    path = tmp_path / "scanner"
    with pty_scanner(path):
        scanner = SerialScanner(config(path))
        async with scanner:
            await until_state(scanner, "connected")
        rest = [item async for item in scanner]
    assert rest == [StateChanged("hand-1", "disconnected", detail="stopped")]
    with pytest.raises(ValueError, match="queue_size"):
        SerialScanner(config(path), queue_size=0)
