"""A scenario's dock doors and what happens at them: pallets passing through (or in
part way and back out), staged beside a door, driven across its face, and what a portal
must make of every tag's time there (``TagPass``).

Each function checks the entries it resolves; a ``ValueError`` names the entry
(``passes[3].door``), as a pydantic validator reports it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from firmware_sim.errors import SimConfigError
from firmware_sim.portal_door import Direction, DockDoor
from firmware_sim.portal_motion import CrossTraffic, PalletPass
from firmware_sim.portal_rf import RfModel
from firmware_sim.scenario_model import ScenarioSpec
from firmware_sim.scenario_tables import PortalSpec, ReaderSpec
from firmware_sim.scenario_units import PalletUnits, Unit

Window = tuple[float, float]
"""Scenario times (from, to) outside which a pass cannot be read."""


@dataclass(frozen=True, slots=True)
class Door:
    """A dock door of the scenario, resolved."""

    read_point: str
    inbound_location: str
    reader: ReaderSpec
    model: DockDoor
    portal: PortalSpec


@dataclass(frozen=True, slots=True)
class TagPass:
    """One tag's time at a door in the ground truth: what a portal must make of it.

    ``expected`` is the direction it crossed in, or None when it did not cross (staged
    beside the door, driven across the door's face, entered and backed out): then any
    direction the system gives it is wrong.
    """

    epc_hex: str
    urn: str
    read_point: str
    start_s: float
    end_s: float
    """Scenario times outside which the tag cannot be read during this pass."""
    expected: Literal["in", "out"] | None
    kind: Literal["pass", "stop", "back_out", "staged", "cross"]
    source: str
    """Which table entry it comes from (``passes[3]``)."""


def rf_model(portal: PortalSpec) -> RfModel:
    """The read model of a ``[portal]`` table."""
    return RfModel(
        p0=portal.p0,
        d0_m=portal.d0_m,
        min_probability=portal.min_probability,
        rssi_near_dbm=portal.rssi_near_dbm,
        rssi_far_dbm=portal.rssi_far_dbm,
        far_m=portal.far_m,
        rssi_noise_db=portal.rssi_noise_db,
        stray_probability=portal.stray_probability,
        stray_rssi_dbm=portal.stray_rssi_dbm,
        stray_range_m=portal.stray_range_m,
    )


def dock_door(reader: ReaderSpec, portal: PortalSpec, where: str) -> DockDoor:
    """The door model of a reader and portal table; ``where`` names the portal's key."""
    try:
        door = DockDoor(
            outside_antennas=reader.outside_antennas,
            inside_antennas=reader.inside_antennas,
            outside_x_m=portal.outside_x_m,
            inside_x_m=portal.inside_x_m,
            approach_m=portal.approach_m,
            rf=rf_model(portal),
            photo_eye_gpi=reader.photo_eye_gpi,
            outside_y_m=portal.outside_y_m,
            inside_y_m=portal.inside_y_m,
        )
    except SimConfigError as err:
        raise ValueError(f"{where}: {err}") from err
    low, high = door.read_zone_m()
    if portal.stray_probability:
        low, high = min(low, -portal.stray_range_m), max(high, portal.stray_range_m)
    if portal.approach_m < max(-low, high) + portal.spread_m:
        raise ValueError(
            f"{where}.approach_m: {portal.approach_m} m starts pallets inside the read zone"
            f" ({low:.2f}..{high:.2f} m); make it at least {max(-low, high) + portal.spread_m:.2f}"
        )
    return door


def make_doors(scenario: ScenarioSpec) -> dict[str, Door]:
    """Every door by read point, the first one first; checks doors and readers are unique."""
    doors: dict[str, Door] = {}
    readers: set[str] = set()
    specs = [
        (scenario.read_point, scenario.inbound_location, scenario.reader, scenario.portal, "portal")
    ]
    for i, extra in enumerate(scenario.doors):
        specs.append(
            (
                extra.read_point,
                extra.inbound_location,
                extra.reader,
                extra.portal or scenario.portal,
                f"doors[{i}].portal",
            )
        )
    for i, (read_point, inbound, reader, portal, where) in enumerate(specs):
        key = "read_point" if i == 0 else f"doors[{i - 1}].read_point"
        if read_point in doors:
            raise ValueError(f"{key}: door {read_point!r} is defined twice")
        if reader.name in readers:
            raise ValueError(f"{key}: reader {reader.name!r} serves two doors")
        readers.add(reader.name)
        doors[read_point] = Door(
            read_point, inbound, reader, dock_door(reader, portal, where), portal
        )
    return doors


def door_of(
    scenario: ScenarioSpec, doors: Mapping[str, Door], read_point: str | None, where: str
) -> Door:
    """The door at ``read_point`` (None: the first door); ``where`` names the key."""
    if read_point is None:
        return doors[scenario.read_point]
    try:
        return doors[read_point]
    except KeyError:
        raise ValueError(f"{where}: no door {read_point!r}; doors are {sorted(doors)}") from None


def check_passes(scenario: ScenarioSpec, doors: Mapping[str, Door], units: PalletUnits) -> None:
    """Every pass names a known pallet and door, and no pallet enters twice or ships
    without having been received."""
    inside: dict[str, int] = {}
    for i in sorted(range(len(scenario.passes)), key=lambda k: scenario.passes[k].at_s):
        p = scenario.passes[i]
        if p.pallet not in units:
            raise ValueError(f"passes[{i}].pallet: unknown pallet {p.pallet!r}")
        door = door_of(scenario, doors, p.door, f"passes[{i}].door")
        for name in ("stop_at_m", "turn_at_m"):
            where = getattr(p, name)
            if where is not None and not -door.portal.approach_m < where < door.portal.approach_m:
                raise ValueError(
                    f"passes[{i}].{name}: {where} m lies beyond the approach"
                    f" (±{door.portal.approach_m} m)"
                )
        if p.turn_at_m is not None:
            if p.stop_at_m is not None and p.stop_at_m > p.turn_at_m:
                raise ValueError(f"passes[{i}]: a pallet that turns back stops before it turns")
            held = p.pallet in inside
            if held != (p.direction is Direction.OUT):
                where = "inside" if held else "outside"
                raise ValueError(
                    f"passes[{i}]: pallet {p.pallet!r} is {where}; it cannot start"
                    f" {p.direction} from there"
                )
            continue
        if p.direction is Direction.IN:
            if p.pallet in inside:
                raise ValueError(
                    f"passes[{i}]: pallet {p.pallet!r} is already inside"
                    f" (passes[{inside[p.pallet]}] brought it in)"
                )
            inside[p.pallet] = i
        else:
            if p.pallet not in inside:
                raise ValueError(
                    f"passes[{i}]: pallet {p.pallet!r} ships without having been received"
                )
            del inside[p.pallet]


def check_gaps(scenario: ScenarioSpec, windows: tuple[Window, ...]) -> None:
    """Pallets in one lane of a door are at least ``min_gap_s`` apart."""
    by_door: dict[tuple[str, float], list[int]] = {}
    for i, p in enumerate(scenario.passes):
        # Lanes of a wide door are apart: pallets in two lanes may pass at once.
        by_door.setdefault((p.door or scenario.read_point, p.lane_m), []).append(i)
    for indexes in by_door.values():
        order = sorted(indexes, key=lambda k: windows[k][0])
        for before, after in itertools.pairwise(order):
            gap = windows[after][0] - windows[before][1]
            if gap < scenario.min_gap_s:
                earlier = f"pallet {scenario.passes[before].pallet!r} (passes[{before}])"
                when = (
                    f"while {earlier} is still in it"
                    if gap < 0
                    else f"only {gap:.2f} s after {earlier} left it"
                )
                raise ValueError(
                    f"passes[{after}].at_s: pallet {scenario.passes[after].pallet!r} enters the"
                    f" read zone {when}; min_gap_s is {scenario.min_gap_s}"
                )


def check_staged(
    scenario: ScenarioSpec, doors: Mapping[str, Door], units: PalletUnits, end: float
) -> float:
    """Check ``[[staged]]``; the time the last staged pallet goes away, or ``end`` (the
    passes' end) if later."""
    for i, staged in enumerate(scenario.staged):
        if staged.pallet not in units:
            raise ValueError(f"staged[{i}].pallet: unknown pallet {staged.pallet!r}")
        if any(p.pallet == staged.pallet for p in scenario.passes):
            raise ValueError(f"staged[{i}].pallet: {staged.pallet!r} also passes the door")
        door_of(scenario, doors, staged.door, f"staged[{i}].door")
        if staged.until_s is None and not scenario.passes:
            raise ValueError(f"staged[{i}].until_s: required when there are no passes")
        until = staged.until_s if staged.until_s is not None else end
        if until < staged.from_s:
            raise ValueError(f"staged[{i}].until_s: before from_s")
        end = max(end, until)
    return end


def check_cross(
    scenario: ScenarioSpec, doors: Mapping[str, Door], units: PalletUnits, end: float
) -> float:
    """Check ``[[cross]]``; the time the last crossing pallet has gone, or ``end`` if later."""
    traffic = Traffic(scenario, doors, units)
    for i, cross in enumerate(scenario.cross):
        if cross.pallet not in units:
            raise ValueError(f"cross[{i}].pallet: unknown pallet {cross.pallet!r}")
        door_of(scenario, doors, cross.door, f"cross[{i}].door")
        end = max(end, traffic.cross_traffic(i).end)
    return end


@dataclass(frozen=True, slots=True)
class Traffic:
    """The pallets a scenario drives in front of its doors (``[[passes]]``, ``[[cross]]``)
    as the portal model drives them, scenario time 0 at ``t0``, played ``speed`` times as
    fast."""

    scenario: ScenarioSpec
    doors: Mapping[str, Door]
    units: PalletUnits

    def pallet_pass(self, index: int, t0: float = 0.0, speed: float = 1.0) -> PalletPass:
        """Pass ``index``."""
        scenario = self.scenario
        p = scenario.passes[index]
        door = door_of(scenario, self.doors, p.door, f"passes[{index}].door")
        pallet = next(pallet for pallet in scenario.pallets if pallet.id == p.pallet)
        try:
            return PalletPass(
                door.model,
                [u.epc_hex for u in self.units[p.pallet]],
                start=t0 + p.at_s / speed,
                direction=p.direction,
                speed_mps=min(20.0, p.speed_mps * speed),
                layout_seed=f"{scenario.seed}:{index}",
                spread_m=door.portal.spread_m,
                lateral_m=door.portal.lateral_m,
                lane_m=p.lane_m,
                stop_at_m=p.stop_at_m,
                stop_s=p.stop_s / speed,
                turn_at_m=p.turn_at_m,
                shielded=pallet.shielded,
                leaks=pallet.leaks,
                shield_db=door.portal.shield_db,
            )
        except SimConfigError as err:
            raise ValueError(f"passes[{index}]: {err}") from err

    def cross_traffic(self, index: int, t0: float = 0.0, speed: float = 1.0) -> CrossTraffic:
        """Crossing ``index``."""
        c = self.scenario.cross[index]
        door = door_of(self.scenario, self.doors, c.door, f"cross[{index}].door")
        try:
            return CrossTraffic(
                door.model,
                [u.epc_hex for u in self.units[c.pallet]],
                side=c.side,
                start=t0 + c.at_s / speed,
                speed_mps=min(20.0, c.speed_mps * speed),
                offset_m=c.offset_m,
                reach_m=c.reach_m,
                layout_seed=f"{self.scenario.seed}:cross:{index}",
                spread_m=door.portal.spread_m,
            )
        except SimConfigError as err:
            raise ValueError(f"cross[{index}]: {err}") from err


def expected_tag_passes(
    scenario: ScenarioSpec,
    doors: Mapping[str, Door],
    units: PalletUnits,
    windows: tuple[Window, ...],
    duration_s: float,
) -> list[TagPass]:
    """Every tag's time at a door and what a portal must make of it (see ``TagPass``)."""
    found: list[TagPass] = []
    for i, p in enumerate(scenario.passes):
        start, end = windows[i]
        kind: Literal["pass", "stop", "back_out"] = (
            "back_out" if p.turn_at_m is not None else "stop" if p.stop_s else "pass"
        )
        expected: Literal["in", "out"] | None = (
            None if p.turn_at_m is not None else ("in" if p.direction is Direction.IN else "out")
        )
        at = p.door or scenario.read_point
        found += _each_unit(units[p.pallet], at, (start, end), expected, kind, f"passes[{i}]")
    for i, staged in enumerate(scenario.staged):
        until = staged.until_s if staged.until_s is not None else duration_s
        at = staged.door or scenario.read_point
        span = (staged.from_s, until)
        found += _each_unit(units[staged.pallet], at, span, None, "staged", f"staged[{i}]")
    for i, c in enumerate(scenario.cross):
        span = (c.at_s, Traffic(scenario, doors, units).cross_traffic(i).end)
        at = c.door or scenario.read_point
        found += _each_unit(units[c.pallet], at, span, None, "cross", f"cross[{i}]")
    return found


def _each_unit(
    units: Sequence[Unit],
    read_point: str,
    span: Window,
    expected: Literal["in", "out"] | None,
    kind: Literal["pass", "stop", "back_out", "staged", "cross"],
    entry: str,
) -> list[TagPass]:
    """The same ``TagPass`` for each case of a pallet."""
    start, end = span
    return [
        TagPass(unit.epc_hex, unit.urn, read_point, start, end, expected, kind, entry)
        for unit in units
    ]
