"""A scenario's handheld side and its ground truth: the timeline replayed through a
``truth.Book`` (passes, shelf changes, counts, scans, scanner faults in time order) gives
what a correct system must end up with and every scan the scenario makes
(``PlannedScan``), including the ones a scanner fault spoils or loses."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from firmware_sim.barcode_symbols import Symbol
from firmware_sim.errors import SimConfigError
from firmware_sim.portal_door import Direction
from firmware_sim.scenario_doorways import Door, door_of
from firmware_sim.scenario_model import ScenarioSpec
from firmware_sim.scenario_shelves import ShelfStep, shelf_of
from firmware_sim.scenario_tables import (
    DEFAULT_SCANNER,
    CodeSpec,
    CountSpec,
    ItemSpec,
    ScannerSpec,
    ScanSpec,
)
from firmware_sim.scenario_units import PalletUnits, all_units, pallet_contents
from firmware_sim.truth import Book, BookError, GroundTruth, UnitInfo
from wire.barcodes import parse_barcode
from wire.scans import BarcodeError, Command

MAX_SCANS: Final = 20_000
PARTIAL_LINE_TIMEOUT_S: Final = 2.0
"""The edge's default ``line_timeout_s``: unterminated fault bytes spoil the next scan of
their scanner if it comes within this; later, the edge has dropped them already."""
PICK_ZONE: Final = "staging"
"""Where a handheld's picks put the goods, under the site: the server's default
``[operations] pick_zone``."""
REPLUG_MARGIN_S: Final = 0.1
"""Scans this long after an unplug's delay still count as lost (the replug races them)."""


@dataclass(frozen=True, slots=True)
class PlannedScan:
    """One scan the scenario makes: when, by which scanner, of what."""

    at_s: float
    scanner: str
    symbol: Symbol
    source: str
    """Which table entry it comes from (``counts[0]``, ``scans[2]``)."""
    fate: Literal["ok", "spoiled", "lost"] = "ok"
    """``spoiled``: sent, but glued to a fault's unterminated bytes (a malformed line);
    ``lost``: not sent, the scanner is unplugged. Neither moves stock."""


def make_scanners(scenario: ScenarioSpec) -> dict[str, ScannerSpec]:
    """Every scanner by name, with the default one if the scenario scans without one."""
    scanners: dict[str, ScannerSpec] = {}
    for i, spec in enumerate(scenario.scanners):
        if spec.name in scanners:
            raise ValueError(f"scanners[{i}].name: scanner {spec.name!r} is defined twice")
        try:
            spec.style()
        except SimConfigError as err:
            raise ValueError(f"scanners[{i}]: {err}") from err
        scanners[spec.name] = spec
    if not scanners and (scenario.counts or scenario.scans):
        default = ScannerSpec(name=DEFAULT_SCANNER, read_point=scenario.inbound_location)
        scanners[default.name] = default
    return scanners


def scan_symbols(scenario: ScenarioSpec, index: int, spec: ScanSpec) -> list[Symbol]:
    """The symbols of ``scans[index]``."""
    items = {item.id: item for item in scenario.items}
    symbols = []
    for j, code in enumerate(spec.codes):
        where = f"scans[{index}].codes[{j}]"
        try:
            symbol = symbol_of(scenario, code, items)
            symbols.append(Symbol.link(symbol) if code.link else symbol)
        except (SimConfigError, BarcodeError, KeyError) as err:
            raise ValueError(f"{where}: {err}") from err
    return symbols


def symbol_of(scenario: ScenarioSpec, code: CodeSpec, items: Mapping[str, ItemSpec]) -> Symbol:
    """The symbol of one code in ``[[scans]]``."""
    if code.pallet is not None:
        pallet = next((p for p in scenario.pallets if p.id == code.pallet), None)
        if pallet is None or pallet.sscc is None:
            raise SimConfigError(f"no pallet {code.pallet!r} with an sscc")
        return Symbol.pallet(pallet.sscc)
    if code.link and (code.command or code.location or code.raw or code.symbology):
        raise SimConfigError("link = true is for GS1 item and pallet labels")
    if code.command is not None:
        return Symbol.command(code.command)
    if code.location is not None:
        return Symbol.location(code.location)
    if code.raw is not None:
        return Symbol(code.raw)
    if code.item is not None:
        if code.item not in items:
            raise SimConfigError(f"unknown item {code.item!r}")
        gtin = items[code.item].gtin
    else:
        assert code.gtin is not None
        gtin = code.gtin
    if code.symbology in ("ean13", "upca"):
        if code.serial is not None or code.lot or code.expiry or code.count:
            raise SimConfigError(f"a {code.symbology} carries only a GTIN")
        return Symbol.ean13(gtin) if code.symbology == "ean13" else Symbol.upca(gtin)
    return Symbol.gs1(
        gtin,
        lot=code.lot,
        expiry=code.expiry,
        serial=None if code.serial is None else str(code.serial),
        count=code.count,
        datamatrix=code.symbology == "datamatrix",
    )


def count_symbols(scenario: ScenarioSpec, index: int, spec: CountSpec, book: Book) -> list[Symbol]:
    """What the handheld scans for ``counts[index]``, given what the book holds there."""
    where = f"counts[{index}]"
    items = {item.id: item for item in scenario.items}
    present = book.units_at(spec.location)
    for missing in spec.missing:
        if missing.item not in items:
            raise ValueError(f"{where}.missing: unknown item {missing.item!r}")
        gtin = items[missing.item].gtin
        mine = [u for u in present if u.gtin == gtin]
        if len(mine) < missing.count:
            raise ValueError(
                f"{where}.missing: {missing.count} cases of {missing.item!r} missing, but"
                f" only {len(mine)} are at {spec.location} at {spec.at_s:g} s"
            )
        gone = {u.urn for u in mine[len(mine) - missing.count :]}
        present = [u for u in present if u.urn not in gone]
    symbols = [Symbol.command(Command.COUNT), Symbol.location(spec.location)]
    try:
        for unit in present:
            symbols.append(
                Symbol.gs1(unit.gtin, serial=str(unit.serial), datamatrix=spec.datamatrix)
            )
        for extra in spec.extra:
            symbols.append(Symbol.gs1(extra.gtin, count=extra.count, datamatrix=spec.datamatrix))
    except SimConfigError as err:
        raise ValueError(f"{where}.extra: {err}") from err
    symbols.append(Symbol.command(Command.END))
    return symbols


def play(
    scenario: ScenarioSpec,
    doors: Mapping[str, Door],
    units: PalletUnits,
    scanners: Mapping[str, ScannerSpec],
    shelf_plan: tuple[ShelfStep, ...],
) -> tuple[GroundTruth, tuple[PlannedScan, ...]]:
    """Replay the timeline through a ``Book``; the truth and every scan to make."""
    known = {item.gtin for item in scenario.items if item.known}
    infos = [UnitInfo(u.urn, u.gtin, u.serial) for u in all_units(scenario, units)]
    book = Book(
        known,
        infos,
        pick_zone=PICK_ZONE,
        refuse_negative=scenario.refuse_negative_stock,
        pallets=pallet_contents(scenario, units),
    )
    for spec in scanners.values():
        book.handheld(spec.name, spec.read_point)
    # (time, order, seq, what): passes before scans at the same instant.
    queue: list[tuple[float, int, int, tuple[Any, ...]]] = []
    seq = itertools.count()
    for i, p in enumerate(scenario.passes):
        heapq.heappush(queue, (p.at_s, 0, next(seq), ("pass", i)))
    for i, count in enumerate(scenario.counts):
        if count.scanner not in scanners:
            raise ValueError(f"counts[{i}].scanner: no scanner {count.scanner!r}")
        heapq.heappush(queue, (count.at_s, 1, next(seq), ("count", i)))
    for i, scans in enumerate(scenario.scans):
        if scans.scanner not in scanners:
            raise ValueError(f"scans[{i}].scanner: no scanner {scans.scanner!r}")
        for j, symbol in enumerate(scan_symbols(scenario, i, scans)):
            at = scans.at_s + j * scans.gap_s
            heapq.heappush(
                queue, (at, 1, next(seq), ("scan", scans.scanner, symbol, f"scans[{i}]"))
            )
    for i, fault in enumerate(scenario.faults):
        if fault.scanner is not None:
            heapq.heappush(queue, (fault.at_s, 1, next(seq), ("scanner_fault", i)))
    gone_at: dict[str, float] = {}
    """Cases off their shelf unscanned, by URN: when they went."""
    picks = iter([c for c in scenario.shelf_changes if c.take is not None and c.scanner])
    for when, kind, shelf_id, cases in shelf_plan:
        heapq.heappush(queue, (when, 0, next(seq), ("shelf", kind, shelf_id, cases)))
        if kind == "pick":
            change = next(picks)
            assert change.scanner is not None
            place = shelf_of(scenario, shelf_id).location
            symbols = [Symbol.command(Command.PICK), Symbol.location(place)]
            symbols += [Symbol.gs1(case.gtin, serial=str(case.serial)) for case in cases]
            for j, symbol in enumerate(symbols, 1):
                scan_item = ("scan", change.scanner, symbol, "shelf_changes")
                heapq.heappush(queue, (when + j * change.gap_s, 1, next(seq), scan_item))
        elif kind == "take":
            due = when + shelf_of(scenario, shelf_id).missing_after_s
            for case in cases:
                due_item = ("shelf_due", shelf_id, case.urn, when)
                heapq.heappush(queue, (due, 1, next(seq), due_item))
    plan: list[PlannedScan] = []
    spoil_until: dict[str, float] = {}
    unplugged_until: dict[str, float] = {}
    while queue:
        at, _, _, what = heapq.heappop(queue)
        try:
            if what[0] == "pass":
                p = scenario.passes[what[1]]
                door = door_of(scenario, doors, p.door, "")
                if p.turn_at_m is not None:
                    continue  # entered part way and backed out: nothing moved
                for unit in units[p.pallet]:
                    if p.direction is Direction.IN:
                        book.receive(unit.urn, door.inbound_location)
                    else:
                        book.ship(unit.urn)
            elif what[0] == "shelf":
                _, kind, shelf_id, cases = what
                place = shelf_of(scenario, shelf_id).location
                for case in cases:
                    if kind in ("put", "back"):
                        gone_at.pop(case.urn, None)
                        book.shelf_arrive(case.urn, place)
                    elif kind == "take":
                        gone_at[case.urn] = at
            elif what[0] == "shelf_due":
                _, shelf_id, urn, went = what
                if gone_at.get(urn) == went:
                    book.shelf_missing(urn, shelf_id, shelf_of(scenario, shelf_id).location)
            elif what[0] == "count":
                spec = scenario.counts[what[1]]
                for j, symbol in enumerate(count_symbols(scenario, what[1], spec, book)):
                    item = ("scan", spec.scanner, symbol, f"counts[{what[1]}]")
                    heapq.heappush(queue, (at + j * spec.gap_s, 1, next(seq), item))
            elif what[0] == "scanner_fault":
                fault = scenario.faults[what[1]]
                name = fault.scanner
                assert name is not None
                if fault.kind in ("garbage", "partial_line"):
                    spoil_until[name] = at + PARTIAL_LINE_TIMEOUT_S
                elif fault.kind == "unplug":
                    delay = float(fault.params.get("delay_s", 0.5))
                    unplugged_until[name] = at + delay + REPLUG_MARGIN_S
            else:
                _, scanner, symbol, source = what
                if len(plan) >= MAX_SCANS:
                    raise ValueError(f"more than {MAX_SCANS} scans in the scenario")
                if at <= unplugged_until.get(scanner, -1.0):
                    plan.append(PlannedScan(at, scanner, symbol, source, "lost"))
                    continue
                if at <= spoil_until.pop(scanner, -1.0):
                    plan.append(PlannedScan(at, scanner, symbol, source, "spoiled"))
                    continue
                plan.append(PlannedScan(at, scanner, symbol, source))
                try:
                    scan = parse_barcode(f"{symbol.symbology or ''}{symbol.content}")
                except BarcodeError:
                    continue  # a malformed scan moves nothing
                book.scan(scanner, scan, at)
        except BookError as err:
            source = f"passes[{what[1]}]" if what[0] == "pass" else str(what[-1])
            if what[0] == "count":
                source = f"counts[{what[1]}]"
            raise ValueError(f"{source} at {at:g} s: {err}") from err
    staged = {u.urn for s in scenario.staged for u in units[s.pallet]}
    return book.truth(staged), tuple(plan)
