"""Scenarios with several doors, handheld counts and scans, and faults: validation, ground
truth, and a real run checked against what the simulators emitted."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
import serial

from edge.readers.types import TagRead
from firmware_sim.cli import read_scans_file, run_scanner, run_scenario_file, symbol_from_text
from firmware_sim.errors import ScenarioError, SimConfigError
from firmware_sim.probe import LlrpProbe
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scanner import ScannerSimulator
from firmware_sim.scenario import bundled_scenario, load_scenario, parse_scenario
from firmware_sim.scenario_run import run_scenario
from firmware_sim.truth import ExpectedAlert
from tests.firmware_sim.support import Seen, direction_of, edge_on, passes_of, until
from wire.barcodes import parse_barcode
from wire.scans import BarcodeError, Command, CommandScan, ItemScan, LocationScan

ROUGH = bundled_scenario("rough_day")
BUSY = bundled_scenario("busy_day")
SMALL = bundled_scenario("small")
COFFEE, TEA, SUGAR = "10614141000217", "10614141000224", "10614141000231"
STRANGER = "09506000134352"  # the extra case the count finds
EAN = "04006381333931"  # received by its EAN-13, in no item master


def test_the_busy_day_is_busy() -> None:
    day = load_scenario(BUSY)
    truth = day.ground_truth()
    assert len(day.all_doors) == 4
    assert len({d.reader.name for d in day.all_doors}) == 4
    assert sum(p.direction == "in" for p in day.passes) == 80
    assert sum(p.direction == "out" for p in day.passes) == 48
    assert 2000 <= len(day.units) <= 3000
    assert len(truth.received) == sum(
        len(day.pallet_units(p.pallet)) for p in day.passes if p.direction == "in"
    )
    assert truth.units_shipped == len(truth.shipped) > 1000
    assert sum(truth.stock.values()) == len(truth.received) - len(truth.shipped)
    assert {loc for _, loc in truth.stock} <= {f"wh1.receiving.{d}" for d in (1, 2, 3, 4)}
    assert not truth.alerts
    assert 100 <= day.duration_s <= 130
    # Some pallets leave through another door than the one they came in by.
    came_in = {p.pallet: p.door for p in day.passes if p.direction == "in"}
    assert any(came_in[p.pallet] != p.door for p in day.passes if p.direction == "out")


def test_the_rough_days_ground_truth() -> None:
    day = load_scenario(ROUGH)
    truth = day.ground_truth()
    assert truth.stock == {
        (EAN, "wh1.aisle.3"): 1,
        (STRANGER, "wh1.receiving"): 1,
        (COFFEE, "wh1.aisle.3"): 19,  # 12 + 12 received, 5 picked
        (COFFEE, "wh1.staging"): 5,  # to the pick zone
        (COFFEE, "wh1.receiving"): 3,
        (TEA, "wh1.receiving"): 1,  # two came in, one went missing
        (SUGAR, "wh1.receiving.2"): 2,
    }
    assert truth.missing == {"urn:epc:id:sgtin:0614141.100022.2"}
    assert truth.units_shipped == 3
    assert set(truth.alerts) == {
        ExpectedAlert("unknown_item", SUGAR),  # known = false, received through door 2
        ExpectedAlert("unknown_item", STRANGER),
        ExpectedAlert("unknown_item", EAN),
        ExpectedAlert("count_discrepancy", f"{TEA}@wh1.receiving"),
        ExpectedAlert("count_discrepancy", f"{STRANGER}@wh1.receiving"),
    }
    (count,) = truth.counts
    assert count.expected == {COFFEE: 3, TEA: 2}
    assert count.discrepancies == {STRANGER: 1, TEA: -1}
    fates = Counter(p.fate for p in day.scan_plan())
    assert fates == {"ok": 15, "spoiled": 1}


BASE = SMALL.read_text()
COUNT = '\n[[counts]]\nat_s = 9.0\nlocation = "wh1.receiving"\n'


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('\n[[passes]]\nat_s = 20\npallet = "P3"\ndirection = "in"\ndoor = "x"\n', r"no door 'x'"),
        (COUNT + 'missing = [{ item = "soap", count = 9 }]\n', r"counts\[0\]\.missing: 9 cases"),
        (COUNT + 'scanner = "nope"\n', r"counts\[0\]\.scanner: no scanner 'nope'"),
        (COUNT + 'extra = [{ gtin = "123", count = 1 }]\n', r"counts\[0\]\.extra\[0\]\.gtin"),
        ('\n[[faults]]\nat_s = 1\nkind = "melt"\n', r"faults\[0\]: unknown fault 'melt'"),
        ('\n[[faults]]\nat_s = 1\nkind = "slow"\nspeed = 3\n', r"unknown parameter 'speed'"),
        ('\n[[faults]]\nat_s = 1\nkind = "reboot"\nreader = "x"\n', r"faults\[0\]\.reader"),
        (
            '\n[[scans]]\nat_s = 1\ncodes = [{ command = "END" }]\n'
            '\n[[faults]]\nat_s = 1\nkind = "reboot"\nscanner = "handheld-1"\n',
            r"unknown scanner fault 'reboot'",
        ),
        ('\n[[scans]]\nat_s = 1\ncodes = [{ command = "X", raw = "y" }]\n', r"exactly one"),
        ('\n[[scans]]\nat_s = 1\ncodes = [{ item = "wine" }]\n', r"codes\[0\]: unknown item"),
        ('\n[[scans]]\nat_s = 1\ncodes = [{ command = "DANCE" }]\n', r"unknown command"),
        (
            # Counted missing at 9 s, P2's cases cannot leave at 12 s.
            COUNT
            + 'missing = [{ item = "shampoo", count = 2 }]\n'
            + '\n[[passes]]\nat_s = 12\npallet = "P2"\ndirection = "out"\n',
            r"passes\[3\] at 12 s: unit .* ships while missing",
        ),
    ],
)
def test_invalid_days_name_the_key(extra: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(BASE + extra, "small.toml")


def test_a_count_of_an_empty_shelf_and_a_scanned_count_close_alike() -> None:
    day = parse_scenario(
        BASE
        + COUNT
        + '\n[[scans]]\nat_s = 20\ncodes = [{ command = "COUNT" }, { location = "wh1.aisle.1" },'
        + ' { item = "soap", count = 3 }, { item = "soap", serial = 1 },'
        + ' { item = "soap", serial = 1 }, { command = "END" }]\n',
        "small.toml",
    )
    truth = day.ground_truth()
    first, second = truth.counts
    assert first.expected == first.counted  # P2's two shampoo cases are all there
    soap = next(i.gtin for i in day.items if i.id == "soap")
    assert second.counted == {soap: 4}  # three loose, one serial scanned twice = one unit
    assert truth.stock[(soap, "wh1.aisle.1")] == 4


# --- a real run: two doors, a handheld, faults; the edge's readers and a tty on the other side


def lines_of(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\r") if line]


def handheld_counts(lines: list[bytes]) -> tuple[dict[str, int], Counter[tuple[str, str]], int]:
    """An independent reading of what the handheld sent: the count's result, the net
    quantity received minus picked per (GTIN, location), and the malformed lines."""
    mode, location = "receive", "wh1.receiving"
    counted: Counter[str] = Counter()
    serials: set[tuple[str, str]] = set()
    result: dict[str, int] = {}
    moved: Counter[tuple[str, str]] = Counter()
    malformed = 0
    for line in lines:
        try:
            scan = parse_barcode(line.decode("ascii"))
        except (UnicodeDecodeError, BarcodeError):
            malformed += 1
            continue
        if isinstance(scan, LocationScan):
            location = scan.location
        elif isinstance(scan, CommandScan):
            if scan.command.value == "END" and mode == "count":
                result = dict(counted)
                for gtin, _ in serials:
                    result[gtin] = result.get(gtin, 0) + 1
            mode = scan.command.value.lower()
        elif isinstance(scan, ItemScan):
            if mode == "count":
                if scan.serial:
                    serials.add((scan.gtin, scan.serial))
                else:
                    counted[scan.gtin] += scan.qty
            elif mode in ("receive", "pick"):
                moved[(scan.gtin, location)] += scan.qty if mode == "receive" else -scan.qty
    return result, moved, malformed


async def test_a_rough_day_against_the_edge_matches_its_ground_truth(tmp_path: Path) -> None:
    day = load_scenario(ROUGH)
    truth = day.ground_truth()
    (spec,) = day.scanner_specs
    async with contextlib.AsyncExitStack() as stack:
        sims = {
            door.reader.name: await stack.enter_async_context(
                ReaderSimulator(antennas=door.reader.antennas, name=door.reader.name, seed=day.seed)
            )
            for door in day.all_doors
        }
        scanner = await stack.enter_async_context(
            ScannerSimulator(tmp_path / spec.name, name=spec.name, style=spec.style())
        )
        tty = stack.enter_context(serial.Serial(scanner.port, timeout=0.5))
        seen: dict[str, Seen] = {}
        for name, sim in sims.items():
            seen[name] = await stack.enter_async_context(edge_on(sim, name=name))
        for sim in sims.values():
            await sim.wait_inventory(5)
        run = await run_scenario(day, sims, scanners=scanner)
        await asyncio.sleep(0.4)  # the last reports of the last pass
        sent = await asyncio.to_thread(tty.read, tty.in_waiting)

    # The edge decoded exactly what each reader sent, through a dropped connection.
    for name, sim in sims.items():
        assert seen[name].counts() == sim.emitted, name
    assert seen["dock1"].count("connected") == 2  # the drop mid-message, then back
    assert seen["dock2"].count("connected") == 2  # the reboot, then back
    assert sims["dock2"].stats().empty_reports == 1  # armed at 0 s: after the reboot
    # The photo-eye at door 1 saw the one pallet through it.
    assert [(port, high) for _, port, high in sims["dock1"].gpi_changes] == [(1, True), (1, False)]

    # Independent count of the tag reads: passes by direction, per door.
    urn_of = {u.epc_hex: u.urn for u in day.units}
    received: set[str] = set()
    shipped: set[str] = set()
    one_sided: set[str] = set()
    for door in day.all_doors:
        reads: list[TagRead] = seen[door.reader.name].reads()
        outside = set(door.reader.outside_antennas)
        inside = set(door.reader.inside_antennas)
        for epc, groups in passes_of(reads, 2.0).items():
            for group in groups:
                direction = direction_of(group, outside, inside)
                target = {"in": received, "out": shipped}.get(direction or "", one_sided)
                target.add(urn_of[epc])
    assert received == truth.received
    assert shipped == truth.shipped
    assert one_sided == truth.staged

    # Independent count of the handheld's lines.
    lines = lines_of(sent)
    assert len(lines) == sum(p.fate != "lost" for p in day.scan_plan())
    counted, moved, malformed = handheld_counts(lines)
    (count,) = truth.counts
    assert counted == count.counted
    assert malformed == 1
    assert {k: n for k, n in moved.items() if k[1] == "wh1.aisle.3"} == {
        k: n for k, n in truth.stock.items() if k[1] == "wh1.aisle.3"
    }
    assert run.events[-1].kind == "done"
    assert [e.detail for e in run.events if e.kind == "fault"] == [
        "empty_report(count=0)",
        "reboot(delay_s=0.8)",
        "drop_mid_message",
        "garbage",
    ]


async def test_a_scenario_played_faster(tmp_path: Path) -> None:
    day = load_scenario(SMALL)
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=day.seed) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.start_inventory()
        started = time.monotonic()
        run = await run_scenario(day, sim, speed=4)
        took = time.monotonic() - started
        await probe.stop_inventory()
    assert run.speed == 4
    assert took < day.duration_s / 2
    assert {r.epc_hex for r in probe.reads} == {u.epc_hex for u in day.units}


async def test_a_scenario_with_scans_needs_its_scanner() -> None:
    day = load_scenario(ROUGH)
    async with ReaderSimulator(antennas=2, name="dock1") as one:
        with pytest.raises(ScenarioError, match="needs reader 'dock2'"):
            await run_scenario(day, one)
        async with ReaderSimulator(antennas=4, name="dock2") as two:
            with pytest.raises(ScenarioError, match=r"scans with \['handheld-1'\]"):
                await run_scenario(day, {"dock1": one, "dock2": two})


# --- the command line ------------------------------------------------------------------------


async def test_the_scenario_command_serves_every_door_and_scanner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await run_scenario_file(ROUGH, port=0, wait_s=0.1, scanner_dir=tmp_path)
    out = capsys.readouterr().out
    assert status == 1  # nobody started inventory
    assert "LLRP reader 'dock1' for wh1.dock.1" in out
    assert "LLRP reader 'dock2' for wh1.dock.2" in out
    assert f"scanner 'handheld-1' at {tmp_path / 'handheld-1'} -> /dev/pts/" in out
    assert '"kind": "count_discrepancy"' in out
    assert await run_scenario_file(ROUGH, port=0, faults=["melt"]) == 2


async def test_the_reader_command_takes_faults(capsys: pytest.CaptureFixture[str]) -> None:
    from firmware_sim.cli import serve_shelf_reader

    task = asyncio.create_task(
        serve_shelf_reader(port=0, antennas=1, population=3, rate=300, faults=["refuse_connection"])
    )
    out = ""
    try:
        port = 0
        for _ in range(200):
            out += capsys.readouterr().out
            match = re.search(r"on 127\.0\.0\.1:(\d+)", out)
            if match:
                port = int(match.group(1))
                break
            await asyncio.sleep(0.02)
        assert port
        await asyncio.sleep(0.1)
        with pytest.raises(Exception, match="refused"):
            async with LlrpProbe("127.0.0.1", port):
                pass
        async with LlrpProbe("127.0.0.1", port) as probe:
            await probe.start_inventory()
            await until(lambda: len({r.epc_hex for r in probe.reads}) == 3, "the shelf")
    finally:
        task.cancel()
        await asyncio.wait([task])
    out += capsys.readouterr().out
    assert "fault refuse_connection(count=1, status=other_failure) now" in out


def test_scans_files_and_human_readable_gs1() -> None:
    symbol = symbol_from_text("(01)09506000134352(17)270331(10)LOT-1(21)55")
    assert symbol.symbology == "]C1"
    assert symbol.content == "010950600013435217270331" + "10LOT-1\x1d2155"
    assert parse_barcode(symbol.symbology + symbol.content) == ItemScan(
        "09506000134352", lot="LOT-1", serial="55", expiry=date(2027, 3, 31), symbology="]C1"
    )
    assert symbol_from_text("4006381333931").symbology == "]E0"
    assert symbol_from_text("CMD:END").content == "CMD:END"
    with pytest.raises(SimConfigError, match="not a GS1 string"):
        symbol_from_text("(01)0950600013435x2(")


async def test_the_scanner_command_scans_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scans = tmp_path / "scans.txt"
    scans.write_text("# a receipt\nCMD:RECEIVE\nLOC:wh1.aisle.3\n(01)09506000134352(30)6\n")
    assert len(read_scans_file(scans)) == 3
    link = tmp_path / "dev" / "scanner-1"
    task = asyncio.create_task(
        run_scanner(link=link, scans=scans, loops=0, gap_s=(0.01, 0.02), start_delay_s=0.3)
    )
    try:
        await until(link.exists, "the scanner's link")
        with serial.Serial(str(link), timeout=2) as tty:
            data = b""
            for _ in range(500):
                data += await asyncio.to_thread(tty.read, 1)
                if data.count(b"\r") == 3:
                    break
    finally:
        task.cancel()
        await asyncio.wait([task])
    assert [parse_barcode(line.decode()) for line in lines_of(data)] == [
        CommandScan(Command.RECEIVE),
        LocationScan("wh1.aisle.3"),
        ItemScan("09506000134352", qty=6, symbology="]C1"),
    ]
    out = capsys.readouterr().out
    assert f"scanner 'handheld-1' at {link} -> /dev/pts/" in out
    bad = tmp_path / "bad.txt"
    bad.write_text("(01)12(\n")
    assert await run_scanner(link=link, scans=bad) == 2
    assert "bad.txt:1" in capsys.readouterr().err
