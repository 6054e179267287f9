"""Planning a scenario: from what its file says (``scenario_model``) to the timed things
its readers see, its timeline, and the ground truth a correct system must match.

``plan_scenario`` resolves and checks the whole scenario (names that refer to other
tables, pallets that cannot pass as the file says, gaps between pallets at a door) and
plans it: the doors and tagged cases (``scenario_doorways``, ``scenario_units``), the
shelves (``scenario_shelves``) and the ground truth and scans (``scenario_book``). Its
errors are ``ValueError`` naming the entry, as a pydantic validator reports them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from firmware_sim.errors import SimConfigError
from firmware_sim.faults import Fault, make_fault
from firmware_sim.portal import ShelfPopulation, StagedPallet
from firmware_sim.portal_door import Direction, Side
from firmware_sim.portal_motion import CrossTraffic, PalletPass
from firmware_sim.scanner import check_scanner_fault
from firmware_sim.scenario_book import PlannedScan, make_scanners, play
from firmware_sim.scenario_doorways import (
    Door,
    Traffic,
    Window,
    check_cross,
    check_gaps,
    check_passes,
    check_staged,
    door_of,
    make_doors,
)
from firmware_sim.scenario_model import ScenarioSpec
from firmware_sim.scenario_shelves import (
    SHELF_SETTLE_S,
    Presence,
    ShelfStep,
    make_shelves,
    shelf_of,
)
from firmware_sim.scenario_tables import ScannerSpec
from firmware_sim.scenario_units import Unit, make_units
from firmware_sim.truth import GroundTruth


@dataclass(frozen=True, slots=True)
class ScenarioPlan:
    """A scenario resolved and planned."""

    doors: Mapping[str, Door]
    """Every door by read point, the first one first."""
    units: Mapping[str, tuple[Unit, ...]]
    """The tagged cases on each pallet, by pallet id."""
    windows: tuple[Window, ...]
    """The read window of each pass."""
    scanners: Mapping[str, ScannerSpec]
    """Every scanner by name (with the default one if the scenario made one)."""
    faults: tuple[Fault | None, ...]
    """The checked reader fault of each ``faults`` entry (None for scanner faults)."""
    truth: GroundTruth
    scans: tuple[PlannedScan, ...]
    """Every scan, in time order."""
    presence: tuple[Presence, ...]
    shelf_plan: tuple[ShelfStep, ...]
    """Every shelf change, in time order."""
    duration_s: float
    """Until the last pallet has left the read zone, the last scan and the last fault."""


def plan_scenario(scenario: ScenarioSpec) -> ScenarioPlan:
    """Check the scenario as a whole and plan it.

    Raises:
        ValueError: an entry the scenario cannot hold; the message names it.
    """
    doors = make_doors(scenario)
    units = make_units(scenario)
    check_passes(scenario, doors, units)
    traffic = Traffic(scenario, doors, units)
    windows = tuple(traffic.pallet_pass(i).read_window() for i in range(len(scenario.passes)))
    check_gaps(scenario, windows)
    end = max((w[1] for w in windows), default=0.0)
    end = check_staged(scenario, doors, units, end)
    end = check_cross(scenario, doors, units, end)
    scanners = make_scanners(scenario)
    faults = make_faults(scenario, doors, scanners)
    presence, shelf_plan = make_shelves(scenario, doors, units, scanners)
    truth, scans = play(scenario, doors, units, scanners, shelf_plan)
    for when, kind, shelf, _ in shelf_plan:
        due = shelf_of(scenario, shelf).missing_after_s if kind == "take" else 0.0
        end = max(end, when + due + SHELF_SETTLE_S)
    if scans:
        end = max(end, scans[-1].at_s)
    if scenario.faults:
        end = max(end, max(f.at_s for f in scenario.faults))
    return ScenarioPlan(
        doors=doors,
        units=units,
        windows=windows,
        scanners=scanners,
        faults=faults,
        truth=truth,
        scans=scans,
        presence=presence,
        shelf_plan=shelf_plan,
        duration_s=end,
    )


def make_faults(
    scenario: ScenarioSpec, doors: Mapping[str, Door], scanners: Mapping[str, ScannerSpec]
) -> tuple[Fault | None, ...]:
    """Check every ``[[faults]]`` entry; the reader fault of each (None: a scanner's)."""
    faults: list[Fault | None] = []
    readers = {door.reader.name for door in doors.values()}
    for i, spec in enumerate(scenario.faults):
        where = f"faults[{i}]"
        if spec.scanner is not None:
            if spec.reader is not None:
                raise ValueError(f"{where}: a fault is for a reader or a scanner, not both")
            if spec.scanner not in scanners:
                raise ValueError(f"{where}.scanner: no scanner {spec.scanner!r}")
            try:
                check_scanner_fault(spec.kind, **spec.params)
            except SimConfigError as err:
                raise ValueError(f"{where}: {err}") from err
            faults.append(None)
            continue
        if spec.reader is not None and spec.reader not in readers:
            raise ValueError(f"{where}.reader: no reader {spec.reader!r} in {sorted(readers)}")
        try:
            faults.append(make_fault(spec.kind, **spec.params))
        except SimConfigError as err:
            raise ValueError(f"{where}: {err}") from err
    return tuple(faults)


EventKind = Literal[
    "pass_start",
    "pass_end",
    "staged_start",
    "staged_end",
    "cross_start",
    "cross_end",
    "scan",
    "shelf",
    "fault",
    "done",
]


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """A point on a scenario's timeline, as ``run_scenario`` reports it.

    ``pass_end`` comes when the pallet has left the read zone (no read can follow).
    """

    at_s: float
    kind: EventKind
    pallet: str = ""
    direction: Direction | None = None
    side: Side | None = None
    index: int = -1
    """Position in ``passes``, ``staged``, ``faults`` or the scan plan."""
    target: str = ""
    """The door's read point, the scanner or the reader the event concerns."""
    detail: str = ""


def placed_things(
    scenario: ScenarioSpec, plan: ScenarioPlan, t0: float = 0.0, speed: float = 1.0
) -> list[tuple[str, PalletPass | StagedPallet | CrossTraffic | ShelfPopulation]]:
    """Everything the scenario puts in front of its readers, by reader name, with
    scenario time 0 at ``t0`` (the readers' clock)."""
    placed: list[tuple[str, PalletPass | StagedPallet | CrossTraffic | ShelfPopulation]] = []
    traffic = Traffic(scenario, plan.doors, plan.units)
    for i, p in enumerate(scenario.passes):
        door = door_of(scenario, plan.doors, p.door, "")
        placed.append((door.reader.name, traffic.pallet_pass(i, t0, speed)))
    for staged in scenario.staged:
        door = door_of(scenario, plan.doors, staged.door, "")
        until = staged.until_s if staged.until_s is not None else plan.duration_s
        thing = StagedPallet(
            door.model,
            [u.epc_hex for u in plan.units[staged.pallet]],
            side=staged.side,
            start=t0 + staged.from_s / speed,
            end=t0 + until / speed,
            read_probability=staged.read_probability,
        )
        placed.append((door.reader.name, thing))
    for i, c in enumerate(scenario.cross):
        door = door_of(scenario, plan.doors, c.door, "")
        placed.append((door.reader.name, traffic.cross_traffic(i, t0, speed)))
    for presence in plan.presence:
        shelf = shelf_of(scenario, presence.shelf)
        end = math.inf if presence.end is None else t0 + presence.end / speed
        population = ShelfPopulation(
            [presence.unit.epc_hex],
            reads_per_s=shelf.reads_per_s * speed,
            start=t0 + presence.start / speed,
            end=end,
        )
        placed.append((shelf.reader.name, population))
    return placed


def timeline_events(scenario: ScenarioSpec, plan: ScenarioPlan) -> list[ScenarioEvent]:
    """The scenario's events in time order."""
    events: list[ScenarioEvent] = []
    for i, p in enumerate(scenario.passes):
        door = p.door or scenario.read_point
        events.append(ScenarioEvent(p.at_s, "pass_start", p.pallet, p.direction, None, i, door))
        end = plan.windows[i][1]
        events.append(ScenarioEvent(end, "pass_end", p.pallet, p.direction, None, i, door))
    for i, s in enumerate(scenario.staged):
        until = s.until_s if s.until_s is not None else plan.duration_s
        door = s.door or scenario.read_point
        events.append(ScenarioEvent(s.from_s, "staged_start", s.pallet, None, s.side, i, door))
        events.append(ScenarioEvent(until, "staged_end", s.pallet, None, s.side, i, door))
    for i, c in enumerate(scenario.cross):
        door = c.door or scenario.read_point
        end = Traffic(scenario, plan.doors, plan.units).cross_traffic(i).end
        events.append(ScenarioEvent(c.at_s, "cross_start", c.pallet, None, c.side, i, door))
        events.append(ScenarioEvent(end, "cross_end", c.pallet, None, c.side, i, door))
    for i, (when, kind, shelf, units) in enumerate(plan.shelf_plan):
        if kind == "put" and when == 0.0:
            continue  # the shelf's stock, there from the start
        names = ", ".join(f"{u.item} #{u.serial}" for u in units)
        events.append(
            ScenarioEvent(when, "shelf", index=i, target=shelf, detail=f"{kind}: {names}")
        )
    for i, planned in enumerate(plan.scans):
        text = f"{planned.symbol.symbology or ''}{planned.symbol.content}"
        if planned.fate != "ok":
            text += f" ({planned.fate})"
        events.append(
            ScenarioEvent(planned.at_s, "scan", index=i, target=planned.scanner, detail=text)
        )
    for i, fault in enumerate(scenario.faults):
        target = fault.scanner or fault.reader or scenario.reader.name
        checked = plan.faults[i]
        detail = checked.describe() if checked is not None else fault.kind
        events.append(ScenarioEvent(fault.at_s, "fault", index=i, target=target, detail=detail))
    events.sort(key=lambda e: e.at_s)
    events.append(ScenarioEvent(plan.duration_s, "done"))
    return events
