"""A scenario's shelves: which case is on which shelf when, as ``[[shelves]]`` stock them
and ``[[shelf_changes]]`` put cases on, take them off (picked with a scan, or just gone)
and put them back."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from firmware_sim.scenario_doorways import Door
from firmware_sim.scenario_model import ScenarioSpec
from firmware_sim.scenario_tables import ShelfSpec
from firmware_sim.scenario_units import PalletUnits, Unit

SHELF_SETTLE_S: Final = 1.0
"""A scenario lasts this long past its last shelf change (or a taken case's due time), so
the shelf reader has read what changed."""

ShelfStep = tuple[float, str, str, tuple[Unit, ...]]
"""(time, kind, shelf read point, cases) of a shelf change: ``put``, ``take`` (gone
unscanned), ``pick`` (taken with a scan), ``back`` (put back)."""


@dataclass(frozen=True, slots=True)
class Presence:
    """A case on a shelf from ``start`` until ``end`` (None: the end of the scenario)."""

    unit: Unit
    shelf: str
    start: float
    end: float | None


def shelf_of(scenario: ScenarioSpec, read_point: str) -> ShelfSpec:
    """The shelf at ``read_point``."""
    for shelf in scenario.shelves:
        if shelf.read_point == read_point:
            return shelf
    raise ValueError(
        f"no shelf {read_point!r}; shelves are {[s.read_point for s in scenario.shelves]}"
    )


def make_shelves(
    scenario: ScenarioSpec,
    doors: Mapping[str, Door],
    units: PalletUnits,
    scanners: Collection[str],
) -> tuple[tuple[Presence, ...], tuple[ShelfStep, ...]]:
    """Which case is on which shelf when, and every shelf change in time order."""
    readers = {door.reader.name for door in doors.values()}
    points = {door.read_point for door in doors.values()}
    on: dict[str, dict[str, tuple[Unit, float]]] = {}
    placed: set[str] = set()
    presence: list[Presence] = []
    plan: list[ShelfStep] = []
    for i, shelf in enumerate(scenario.shelves):
        if shelf.reader.name in readers or shelf.read_point in points:
            raise ValueError(f"shelves[{i}]: reader or read point used twice")
        readers.add(shelf.reader.name)
        points.add(shelf.read_point)
        on[shelf.read_point] = {}
        initial: list[Unit] = []
        for pallet in shelf.stock:
            if pallet not in units:
                raise ValueError(f"shelves[{i}].stock: unknown pallet {pallet!r}")
            initial.extend(units[pallet])
        plan.append((0.0, "put", shelf.read_point, tuple(initial)))

    def put(shelf: str, cases: tuple[Unit, ...], at: float, where: str) -> None:
        for unit in cases:
            if any(unit.urn in cases for cases in on.values()):
                raise ValueError(f"{where}: case {unit.urn} is on a shelf already")
            on[shelf][unit.urn] = (unit, at)
            placed.add(unit.urn)

    def take(shelf: str, cases: tuple[Unit, ...], at: float) -> None:
        for unit in cases:
            _, since = on[shelf].pop(unit.urn)
            presence.append(Presence(unit, shelf, since, at))

    events: list[tuple[float, int, int, Any]] = []
    for when, kind, shelf_id, cases in plan:
        events.append((when, 0, len(events), (kind, shelf_id, cases, "shelves")))
    for i, change in enumerate(scenario.shelf_changes):
        where = f"shelf_changes[{i}]"
        try:
            shelf_of(scenario, change.shelf)
        except ValueError as err:
            raise ValueError(f"{where}.shelf: {err}") from None
        if change.scanner is not None and change.scanner not in scanners:
            raise ValueError(f"{where}.scanner: no scanner {change.scanner!r}")
        events.append((change.at_s, 1, len(events), (i, change.shelf, (), where)))
    events.sort(key=lambda e: e[:3])
    items = {item.id: item for item in scenario.items}
    shelf_plan: list[ShelfStep] = []
    pending: list[tuple[float, str, tuple[Unit, ...]]] = []
    for when, _, _, (what, shelf_id, cases, where) in events:
        for back in [p for p in pending if p[0] <= when]:
            pending.remove(back)
            put(back[1], back[2], back[0], where)
            shelf_plan.append((back[0], "back", back[1], back[2]))
        if isinstance(what, str):
            put(shelf_id, cases, when, where)
            shelf_plan.append((when, what, shelf_id, cases))
            continue
        change = scenario.shelf_changes[what]
        if change.put is not None:
            if change.put not in units:
                raise ValueError(f"{where}.put: unknown pallet {change.put!r}")
            moved = units[change.put]
            put(shelf_id, moved, when, where)
            shelf_plan.append((when, "put", shelf_id, moved))
            continue
        assert change.take is not None
        if change.take.item not in items:
            raise ValueError(f"{where}.take: unknown item {change.take.item!r}")
        gtin = items[change.take.item].gtin
        mine = sorted(
            (u for u, _ in on[shelf_id].values() if u.gtin == gtin), key=lambda u: u.serial
        )
        if len(mine) < change.take.count:
            raise ValueError(
                f"{where}.take: {change.take.count} cases of {change.take.item!r} taken, "
                f"but {len(mine)} are on {shelf_id} at {when:g} s"
            )
        gone = tuple(mine[len(mine) - change.take.count :])
        take(shelf_id, gone, when)
        shelf_plan.append((when, "pick" if change.scanner else "take", shelf_id, gone))
        if change.back_at_s is not None:
            pending.append((change.back_at_s, shelf_id, gone))
    for back in sorted(pending, key=lambda p: p[0]):
        put(back[1], back[2], back[0], "shelf_changes")
        shelf_plan.append((back[0], "back", back[1], back[2]))
    for shelf_id, still in on.items():
        for unit, since in still.values():
            presence.append(Presence(unit, shelf_id, since, None))
    return (
        tuple(sorted(presence, key=lambda p: (p.start, p.unit.urn))),
        tuple(sorted(shelf_plan, key=lambda p: p[0])),
    )
