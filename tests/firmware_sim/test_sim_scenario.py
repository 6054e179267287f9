"""Scenarios: validation, ground truth, and a real run checked against what was emitted."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from pathlib import Path

import pytest

from firmware_sim.cli import run_scenario_file, serve_shelf_reader
from firmware_sim.errors import ScenarioError
from firmware_sim.llrp_types import ContentSelector
from firmware_sim.probe import LlrpProbe
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scenario import bundled_scenario, load_scenario, parse_scenario
from firmware_sim.scenario_plan import ScenarioEvent
from firmware_sim.scenario_run import run_scenario
from tests.firmware_sim.support import direction_of, passes_of
from wire.gs1 import with_check_digit
from wire.identifiers import epc_urn, gtin_of

DEPARTURE_TIMEOUT_S = 2.0
"""The edge portal's default: a pass ends 2 s after its last read."""
SMALL = bundled_scenario("small")
DEMO = bundled_scenario("demo")


def test_bundled_scenarios_are_short_enough() -> None:
    assert load_scenario(SMALL).duration_s <= 15
    assert load_scenario(DEMO).duration_s <= 20


def test_demo_is_what_the_demo_needs() -> None:
    demo = load_scenario(DEMO)
    ins = [p for p in demo.passes if p.direction == "in"]
    outs = [p for p in demo.passes if p.direction == "out"]
    assert len(ins) == 4
    assert len(outs) == 2
    assert {p.pallet for p in outs} <= {p.pallet for p in ins}
    assert len(demo.staged) == 1
    assert len({u.gtin for u in demo.units}) == 3
    assert [shelf.read_point for shelf in demo.shelves] == ["wh1.shelf.1"]
    assert [spec.name for spec in demo.scanner_specs] == ["handheld-1"]
    for p in ins:
        assert 6 <= len(demo.pallet_units(p.pallet)) <= 10
    windows = sorted(demo.pass_window(i) for i in range(len(demo.passes)))
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(windows)]
    assert min(gaps) > 2.5


@pytest.mark.parametrize("path", [SMALL, DEMO])
def test_units_are_sgtin96_of_their_items(path: Path) -> None:
    scenario = load_scenario(path)
    urns = [u.urn for u in scenario.units]
    assert len(set(urns)) == len(urns)
    for unit in scenario.units:
        assert epc_urn(unit.epc_hex) == unit.urn
        assert gtin_of(unit.urn) == unit.gtin
        assert len(unit.epc_hex) == 24


def test_gs1_check_digit() -> None:
    assert with_check_digit("0061414112345")[-1] == "2"  # GS1's example GTIN614141123452
    assert with_check_digit("1061414100001")[-1] == "9"


def test_ground_truth_of_the_small_scenario() -> None:
    scenario = load_scenario(SMALL)
    truth = scenario.ground_truth()
    p1 = {u.urn for u in scenario.pallet_units("P1")}
    p2 = {u.urn for u in scenario.pallet_units("P2")}
    p3 = {u.urn for u in scenario.pallet_units("P3")}
    shampoo = next(i for i in scenario.items if i.id == "shampoo").gtin
    assert truth.received == p1 | p2
    assert truth.shipped == p1
    assert truth.staged == p3
    assert truth.stock == {(shampoo, "wh1.receiving"): 2}


def test_ground_truth_of_the_demo() -> None:
    demo = load_scenario(DEMO)
    truth = demo.ground_truth()
    expected: Counter[tuple[str, str]] = Counter()
    for pallet in ("PAL-0002", "PAL-0004"):
        for unit in demo.pallet_units(pallet):
            expected[(unit.gtin, "wh1.receiving")] += 1
    # Beside the door: the shelf's cases less the pasta picked (to the pick zone) and the
    # tomatoes stolen, and the two cases of olive oil the handheld received into a bin.
    shelf = demo.pallet_units("SHELF-1")
    picked = max((u for u in shelf if u.item == "pasta"), key=lambda u: u.serial)
    stolen = max((u for u in shelf if u.item == "tomatoes"), key=lambda u: u.serial)
    for unit in shelf:
        if unit not in (picked, stolen):
            expected[(unit.gtin, "wh1.a01.b01")] += 1
    expected[(picked.gtin, "wh1.staging")] += 1
    olive = next(i for i in demo.items if i.id == "olive-oil").gtin
    expected[(olive, "wh1.a02.b01")] += 2
    assert truth.stock == dict(expected)
    assert len(truth.received) == 31
    assert len(truth.shipped) == 14
    assert truth.staged == {u.urn for u in demo.pallet_units("PAL-0005")}
    assert truth.missing == {stolen.urn}
    assert truth.shrinkage == {("wh1.shelf.1", "wh1.a01.b01", stolen.gtin): 1}


# --- validation -----------------------------------------------------------------------------

BASE = SMALL.read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: "bogus = 1\n" + t, r": bogus: Extra inputs are not permitted"),
        (lambda t: t + "\nbogus = 1\n", r"staged\[0\]\.bogus: Extra inputs"),
        (lambda t: t.replace('pallet = "P2"', 'pallet = "P9"'), r"passes\[1\]\.pallet: unknown"),
        (lambda t: t.replace("at_s = 7.3", "at_s = 1.0"), r"passes\[2\]\.at_s: .* still in it"),
        (lambda t: t.replace("at_s = 7.3", "at_s = 6.0"), r"passes\[2\]\.at_s: .* only 1\.\d\d s"),
        (lambda t: t.replace("speed_mps = 3.0", "speed_mps = 99", 1), r"passes\[0\]\.speed_mps"),
        (lambda t: t.replace('"100001"', '"1001"'), r"items\[0\]: Value|13 digits"),
        (lambda t: t.replace('direction = "in"', 'direction = "out"', 1), r"without having been"),
        (lambda t: t.replace('direction = "in"', 'direction = "sideways"', 1), r"direction"),
        (
            lambda t: t.replace('{ item = "soap", count = 2 }]', '{ item = "x", count = 2 }]'),
            r"cases",
        ),
        (lambda t: t.replace('id = "P3"', 'id = "P1"'), r"pallets\[2\]\.id: duplicate"),
        (lambda t: t.replace("inside_antennas = [2]", "inside_antennas = [1]"), r"reader: .*both"),
        (
            lambda t: t.replace("inside_antennas = [2]", "inside_antennas = [3]"),
            r"reader: .*outside",
        ),
        (lambda t: t.replace('pallet = "P3"', 'pallet = "P2"'), r"staged\[0\]\.pallet: .*also"),
        (lambda t: t.replace('side = "outside"', 'side = "up"'), r"staged\[0\]\.side"),
        (lambda t: t + "\n[portal]\napproach_m = 0.8\n", r"portal"),
        (lambda t: t.replace('name = "small"', "name = "), r"not valid TOML"),
    ],
)
def test_invalid_scenarios_name_the_key(change: object, message: str) -> None:
    text = change(BASE)  # type: ignore[operator]
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(text, "small.toml")


def test_a_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match="no bundled scenario"):
        bundled_scenario("../etc/passwd")


# --- a real run, checked against what the simulator emitted -----------------------------------


async def test_a_run_of_the_small_scenario_matches_its_ground_truth() -> None:
    scenario = load_scenario(SMALL)
    truth = scenario.ground_truth()
    events: list[ScenarioEvent] = []
    async with ReaderSimulator(
        antennas=scenario.reader.antennas, name=scenario.reader.name, seed=scenario.seed
    ) as sim:
        async with LlrpProbe("127.0.0.1", sim.port) as probe:
            await probe.start_inventory(selector=ContentSelector(), aispec_duration_ms=100)
            await sim.wait_inventory(5.0)
            run = await run_scenario(scenario, sim, progress=events.append)
            await probe.stop_inventory()
        assert len(sim.field) == 0
    # Independent count: what the client decoded is exactly what the simulator sent.
    assert probe.counts() == sim.emitted

    (outside,) = scenario.reader.outside_antennas
    (inside,) = scenario.reader.inside_antennas
    urn_of = {u.epc_hex: u.urn for u in scenario.units}
    received: set[str] = set()
    shipped: set[str] = set()
    seen_one_sided: set[str] = set()
    stock: Counter[tuple[str, str]] = Counter()
    for epc, groups in passes_of(probe.reads, DEPARTURE_TIMEOUT_S).items():
        urn = urn_of[epc]
        gtin = gtin_of(epc_urn(epc))
        assert gtin is not None
        for group in groups:
            direction = direction_of(group, {outside}, {inside})
            if direction == "in":
                received.add(urn)
                stock[(gtin, scenario.inbound_location)] += 1
            elif direction == "out":
                shipped.add(urn)
                stock[(gtin, scenario.inbound_location)] -= 1
            else:
                seen_one_sided.add(urn)
    assert received == truth.received
    assert shipped == truth.shipped
    assert {k: n for k, n in stock.items() if n} == truth.stock
    assert seen_one_sided == truth.staged
    staged_epcs = {u.epc_hex for u in scenario.units if u.urn in truth.staged}
    assert {r.antenna for r in probe.reads if r.epc_hex in staged_epcs} == {outside}

    # Real time: every pass is read inside its window, and passes are far enough apart.
    slack_us = 60_000
    for i, spec in enumerate(scenario.passes):
        low, high = scenario.pass_window(i)
        tags = {u.epc_hex for u in scenario.pallet_units(spec.pallet)}
        window_reads = [
            r
            for r in probe.reads
            if r.epc_hex in tags
            and run.started_utc_us + low * 1e6 - slack_us
            <= (r.first_seen_us or 0)
            <= run.started_utc_us + high * 1e6 + slack_us
        ]
        assert {r.epc_hex for r in window_reads} == tags
    moving = [r for r in probe.reads if r.epc_hex not in staged_epcs]
    quiet = []
    latest = 0
    for first, last in sorted((r.first_seen_us or 0, r.last_seen_us or 0) for r in moving):
        if latest:
            quiet.append(first - latest)
        latest = max(latest, last)
    assert sorted(quiet)[-2] > 2.5e6  # three passes: two quiet gaps after a last read

    kinds = [e.kind for e in events]
    assert kinds[-1] == "done"
    assert kinds.count("pass_start") == kinds.count("pass_end") == 3
    assert kinds.count("staged_start") == kinds.count("staged_end") == 1
    assert [e.at_s for e in events] == sorted(e.at_s for e in events)


async def test_a_reader_without_the_doors_antennas_is_refused() -> None:
    scenario = load_scenario(SMALL)
    async with ReaderSimulator(antennas=1, name="tiny") as sim:
        with pytest.raises(ScenarioError, match="needs 2 antennas"):
            await run_scenario(scenario, sim)


# --- the command-line entry points --------------------------------------------------------------


async def test_the_shelf_reader_command_serves_reads(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(serve_shelf_reader(port=0, antennas=2, population=5, rate=500))
    try:
        port = 0
        for _ in range(200):
            match = re.search(r"on 127\.0\.0\.1:(\d+)", capsys.readouterr().out)
            if match:
                port = int(match.group(1))
                break
            await asyncio.sleep(0.02)
        assert port
        async with LlrpProbe("127.0.0.1", port) as probe:
            await probe.start_inventory()
            for _ in range(250):
                if len({r.epc_hex for r in probe.reads}) == 5:
                    break
                await asyncio.sleep(0.02)
            assert len({r.epc_hex for r in probe.reads}) == 5
    finally:
        task.cancel()
        await asyncio.wait([task])


async def test_the_scenario_command_reports_bad_input_and_no_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    assert await run_scenario_file(bad, port=0) == 2
    assert "error:" in capsys.readouterr().err
    assert await run_scenario_file(SMALL, port=0, wait_s=0.1) == 1
    out = capsys.readouterr().out
    assert '"scenario": "small"' in out
    assert "waiting for inventory" in out


# --- shelves --------------------------------------------------------------------------------

SHELF = bundled_scenario("shelf")


def test_a_shelf_keeps_count_in_the_ground_truth() -> None:
    scenario = load_scenario(SHELF)
    truth = scenario.ground_truth()
    coffee, tea = (next(i for i in scenario.items if i.id == n).gtin for n in ("coffee", "tea"))
    assert scenario.duration_s <= 15
    # 4 coffee - 1 picked + 2 new - 1 stolen; 6 tea - 1 stolen (one put back in time, one
    # found again after it went missing).
    assert truth.stock == {
        (coffee, "wh1.a05.b01"): 4,
        (coffee, "wh1.staging"): 1,
        (tea, "wh1.a05.b01"): 5,
    }
    assert truth.missing == {
        "urn:epc:id:sgtin:0614141.000031.6",
        "urn:epc:id:sgtin:0614141.000032.5",
    }
    assert truth.shrinkage == {
        ("wh1.shelf.1", "wh1.a05.b01", tea): 2,
        ("wh1.shelf.1", "wh1.a05.b01", coffee): 1,
    }
    # The pick is a handheld's: PICK, the shelf's location, the case's label.
    assert [p.symbol.content for p in scenario.scan_plan()] == [
        "CMD:PICK",
        "LOC:wh1.a05.b01",
        f"01{coffee}214",
    ]
    kinds = [(kind, [u.serial for u in units]) for _, kind, _, units in scenario.shelf_plan()]
    assert kinds[0] == ("put", [1, 2, 3, 4, 1, 2, 3, 4, 5, 6])
    assert ("back", [6]) in kinds


def test_the_shelf_reader_reads_what_is_on_the_shelf_when() -> None:
    scenario = load_scenario(SHELF)
    placed = [(name, thing) for name, thing in scenario.things() if name == "shelf1"]
    stolen = "urn:epc:id:sgtin:0614141.000032.5"
    [(_, thing)] = [(n, t) for n, t in placed if epc_urn(getattr(t, "epcs", ["00"])[0]) == stolen]
    assert (getattr(thing, "start", None), getattr(thing, "end", None)) == (0.0, 3.5)
    assert len(placed) == 6 + 4 + 2 + 2  # the start's cases, new cases, two put back


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.replace(
                'take = { item = "tea", count = 1 }\nback_at_s = 7.0',
                'take = { item = "tea", count = 9 }',
            ),
            r"shelf_changes\[3\]\.take: 9 cases of 'tea' taken, but 4 are on",
        ),
        (
            lambda t: t.replace('put = "S-new"', 'put = "S-new"\nscanner = "handheld-1"'),
            "belong to a take",
        ),
        (
            lambda t: t.replace('shelf = "wh1.shelf.1"', 'shelf = "wh1.shelf.9"', 1),
            r"shelf_changes\[0\]\.shelf: no shelf",
        ),
        (lambda t: t.replace("back_at_s = 7.0", "back_at_s = 1.0"), "back_at_s comes after at_s"),
        (
            lambda t: t.replace('stock = ["S-start"]', 'stock = ["S-start", "S-start"]'),
            "on a shelf already",
        ),
    ],
)
def test_invalid_shelves_name_the_key(change: object, message: str) -> None:
    text = change(SHELF.read_text())  # type: ignore[operator]
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(text, "shelf.toml")


async def test_the_scenario_command_serves_the_shelf_reader_and_prints_its_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await run_scenario_file(SHELF, port=0, wait_s=0.1, scanner_dir=tmp_path)
    out = capsys.readouterr().out
    assert status == 1  # nobody started inventory
    assert "LLRP reader 'dock1' for wh1.dock.1" in out
    assert re.search(r"LLRP reader 'shelf1' for shelf wh1\.shelf\.1 on 127\.0\.0\.1:\d+", out)
    assert '"read_point": "wh1.shelf.1"' in out
    assert '"missing": 2' in out  # the tea the shelf lost (one of them found again)
