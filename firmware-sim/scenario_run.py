"""Playing a scenario into reader and scanner simulators, on their clock.

Times are seconds from the scenario's start. ``run_scenario`` plays them in real time by
default; ``speed`` > 1 plays them faster (times divided, pallets driven faster), for
benchmarks whose edge timeouts are scaled to match.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from firmware_sim.errors import ScenarioError, SimError
from firmware_sim.portal import ShelfPopulation
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scanner import ScannerSimulator
from firmware_sim.scenario import Scenario
from firmware_sim.scenario_plan import ScenarioEvent

logger = logging.getLogger(__name__)

LEAD_S: Final = 0.05
"""Gap between ``run_scenario`` being called and the scenario's time 0."""
MAX_SPEED: Final = 100.0


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    """How a run went: when time 0 was (UTC µs and the simulator's clock) and its events."""

    started_utc_us: int
    started_monotonic: float
    events: tuple[ScenarioEvent, ...]
    speed: float = 1.0


def _readers(
    scenario: Scenario, sims: ReaderSimulator | Mapping[str, ReaderSimulator]
) -> dict[str, ReaderSimulator]:
    if isinstance(sims, ReaderSimulator):
        sims = {scenario.reader.name: sims}
    readers = dict(sims)
    for door in scenario.all_doors:
        sim = readers.get(door.reader.name)
        if sim is None:
            raise ScenarioError(
                f"scenario {scenario.name!r} needs reader {door.reader.name!r} (door"
                f" {door.read_point}); given {sorted(readers)}"
            )
        needed = max(door.model.antennas)
        if sim.antennas < needed:
            raise ScenarioError(
                f"scenario {scenario.name!r} needs {needed} antennas, {sim.name!r} has"
                f" {sim.antennas}"
            )
        gpi = door.reader.photo_eye_gpi
        if gpi is not None and gpi > sim.profile.gpis:
            raise ScenarioError(f"reader {sim.name!r} has no GPI {gpi} for the photo-eye")
    for shelf in scenario.shelves:
        if shelf.reader.name not in readers:
            raise ScenarioError(
                f"scenario {scenario.name!r} needs reader {shelf.reader.name!r} (shelf"
                f" {shelf.read_point}); given {sorted(readers)}"
            )
    return readers


def _scanners(
    scenario: Scenario, scanners: ScannerSimulator | Mapping[str, ScannerSimulator] | None
) -> dict[str, ScannerSimulator]:
    if isinstance(scanners, ScannerSimulator):
        scanners = {scanners.name: scanners}
    given = dict(scanners or {})
    needed = {p.scanner for p in scenario.scan_plan()} | {
        f.scanner for f in scenario.faults if f.scanner
    }
    missing = sorted(needed - set(given))
    if missing:
        raise ScenarioError(
            f"scenario {scenario.name!r} scans with {missing}; pass a ScannerSimulator for each"
        )
    return given


async def run_scenario(
    scenario: Scenario,
    sim: ReaderSimulator | Mapping[str, ReaderSimulator],
    progress: Callable[[ScenarioEvent], None] | None = None,
    *,
    scanners: ScannerSimulator | Mapping[str, ScannerSimulator] | None = None,
    speed: float = 1.0,
    keep_shelves: bool = False,
) -> ScenarioRun:
    """Play a scenario into simulators' fields, scanners and fault injectors.

    Time 0 is now (plus ``LEAD_S``). Returns at ``scenario.duration_s`` (divided by
    ``speed``); what it put into the fields is taken out again, also when cancelled.
    Inventory is the client's business: reads happen only while a client has inventory
    running (see ``ReaderSimulator.wait_inventory``).

    Args:
        scenario: the scenario.
        sim: the reader of the first door, or every door's reader by reader name.
        progress: called with each event as it happens.
        scanners: the scanners the scenario scans with, by name (or the only one).
        speed: 1 is real time; 2 plays twice as fast (pallets move twice as fast too).
        keep_shelves: leave the cases still on shelves in their readers' fields when the
            run ends (the caller clears them): a case left on a shelf does not depart just
            because the run is over.

    Raises:
        ScenarioError: a reader or scanner is missing or lacks what the scenario needs.
    """
    if not 0.01 <= speed <= MAX_SPEED:
        raise ScenarioError(f"speed {speed} outside 0.01..{MAX_SPEED}")
    readers = _readers(scenario, sim)
    hands = _scanners(scenario, scanners)
    first = readers[scenario.reader.name]
    t0 = first.now() + LEAD_S
    started_utc_us = time.time_ns() // 1000 + round((t0 - first.now()) * 1_000_000)
    placed = [(readers[name], thing) for name, thing in scenario.things(t0, speed)]
    events = scenario.timeline()
    plan = scenario.scan_plan()
    jitters = {door.reader.name: door.reader.timestamp_jitter_ms for door in scenario.all_doors}
    before = {name: readers[name].timestamp_jitter_s for name in jitters}
    for name, jitter_ms in jitters.items():
        if jitter_ms:
            readers[name].timestamp_jitter_s = jitter_ms / 1000
    for reader, thing in placed:
        reader.field.add(thing)
    try:
        async with asyncio.TaskGroup() as tasks:
            for event in events:
                await asyncio.sleep(max(0.0, t0 + event.at_s / speed - first.now()))
                logger.info(
                    "scenario %s t=%.2f %s %s %s",
                    scenario.name,
                    event.at_s,
                    event.kind,
                    event.pallet or event.target,
                    event.direction or event.side or event.detail,
                )
                if event.kind == "scan":
                    planned = plan[event.index]
                    if planned.fate == "lost":
                        logger.info("scan lost: %s is unplugged", planned.scanner)
                    else:
                        await hands[planned.scanner].scan(planned.symbol)
                elif event.kind == "fault":
                    _inject(scenario, event.index, readers, hands, tasks)
                if progress is not None:
                    progress(event)
    except* SimError as group:
        raise ScenarioError(f"scenario {scenario.name!r}: {group.exceptions[0]}") from group
    finally:
        for reader, thing in placed:
            if not (keep_shelves and isinstance(thing, ShelfPopulation)):
                reader.field.discard(thing)
        for name, jitter in before.items():
            readers[name].timestamp_jitter_s = jitter
    return ScenarioRun(started_utc_us, t0, tuple(events), speed)


def _inject(
    scenario: Scenario,
    index: int,
    readers: Mapping[str, ReaderSimulator],
    hands: Mapping[str, ScannerSimulator],
    tasks: asyncio.TaskGroup,
) -> None:
    spec = scenario.faults[index]
    if spec.scanner is not None:
        # A replug waits out its delay; the timeline goes on meanwhile.
        tasks.create_task(hands[spec.scanner].inject(spec.kind, **spec.params))
        return
    fault = scenario.reader_fault(index)
    assert fault is not None
    reader = readers[spec.reader or scenario.reader.name]
    reader.inject(fault.kind, **{k: v for k, v in fault.params.items() if v is not None})
