"""Pallets that move in front of a dock door: through it (``PalletPass``), into it and
back out, stopping on the way, or across its face (``CrossTraffic``); both read case by
case by distance to each antenna (``MovingPallet``).

Nothing here sleeps or reads a clock: a thing's path is planned when it is made (its
case layout drawn from ``layout_seed``), and the reader samples it once per round.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Collection, Iterable, Sequence
from typing import Final, NamedTuple

from firmware_sim.errors import SimConfigError
from firmware_sim.portal import Round, TimedThing, check_tags
from firmware_sim.portal_door import Direction, DockDoor, Side
from firmware_sim.portal_rf import Observation, loss_of, power_share, range_scale


class Leg(NamedTuple):
    """One stretch of a pallet's path: from ``x0`` at ``t0`` to ``x1`` at ``t1``."""

    t0: float
    t1: float
    x0: float
    x1: float

    def x(self, t: float) -> float:
        if self.t1 <= self.t0:
            return self.x1
        return self.x0 + (self.x1 - self.x0) * (t - self.t0) / (self.t1 - self.t0)

    def times_within(self, low: float, high: float) -> tuple[float, float] | None:
        """Times (from, to) of this leg the position lies in ``low..high`` (None: never)."""
        if self.x0 == self.x1:
            return (self.t0, self.t1) if low <= self.x0 <= high else None
        rate = (self.x1 - self.x0) / (self.t1 - self.t0)
        a = self.t0 + (low - self.x0) / rate
        b = self.t0 + (high - self.x0) / rate
        begin, finish = max(self.t0, min(a, b)), min(self.t1, max(a, b))
        return (begin, finish) if begin <= finish else None


def check_speed(speed_mps: float) -> None:
    """Raises SimConfigError: a speed no forklift drives a pallet at."""
    if not 0.05 <= speed_mps <= 20:
        raise SimConfigError(f"speed {speed_mps} m/s outside 0.05..20")


Case = tuple[str, float, float]
"""A tagged case where it is in one round: its EPC, x (across the door) and y (lateral)."""


class MovingPallet(TimedThing):
    """Cases driven in front of a door's antennas, each read by its distance to each."""

    def __init__(
        self, door: DockDoor, epcs: Sequence[str], *, start: float, speed_mps: float
    ) -> None:
        self.door = door
        self.epcs = check_tags(epcs)
        self.start = start
        self.speed_mps = speed_mps
        self._antennas = [(a, door.antenna_x(a), door.antenna_y(a)) for a in door.antennas]

    def _read_cases(
        self, now: Round, cases: Sequence[Case], stray: float, out: list[Observation]
    ) -> None:
        """Each driven antenna reads each case by its distance (and, with a ``stray``
        chance, by a reflection while the case is near the door)."""
        antennas, rng = now.antennas, now.rng
        rf = self.door.rf
        for antenna, ax, ay in self._antennas:
            if antenna not in antennas:
                continue
            loss = loss_of(antennas, antenna)
            scale = range_scale(loss)
            stray_p = stray * power_share(loss)
            for epc, x, y in cases:
                distance = math.hypot(x - ax, y - ay)
                p = rf.read_probability(distance * scale)
                if p and rng.random() < p:
                    out.append(Observation(epc, antenna, rf.rssi(distance, rng, loss)))
                elif stray_p and abs(x) <= rf.stray_range_m and rng.random() < stray_p:
                    out.append(Observation(epc, antenna, rf.stray_rssi(rng, loss)))


LEAK_ZONE_M: Final = 0.5
"""A shielded case answers only while it is this close (along the path) to an antenna."""
LEAK_STEP_S: Final = 0.01


class PalletPass(MovingPallet):
    """A pallet of tagged cases driven through (or into and back out of) a dock door.

    Cases sit at fixed offsets around the pallet's centre (along the path within
    ``spread_m``, and 0.05..``lateral_m`` beside its lane), drawn once from
    ``layout_seed`` so the layout does not depend on the reader's timing.

    The path runs from ``approach_m`` before the door at ``speed_mps``; the pallet may stop
    at ``stop_at_m`` (along its direction of travel, 0 = in the door) for ``stop_s``, and
    turn back at ``turn_at_m`` (then it leaves on the side it came from: no movement).
    ``shielded`` cases (the innermost) answer only ``leaks`` times per pass.
    """

    def __init__(
        self,
        door: DockDoor,
        epcs: Sequence[str],
        *,
        start: float,
        direction: Direction,
        speed_mps: float,
        layout_seed: int | str = 0,
        spread_m: float = 0.3,
        lateral_m: float = 0.2,
        lane_m: float = 0.0,
        stop_at_m: float | None = None,
        stop_s: float = 0.0,
        turn_at_m: float | None = None,
        shielded: int = 0,
        leaks: tuple[int, int] = (1, 3),
        shield_db: float = 12.0,
    ) -> None:
        check_speed(speed_mps)
        if not 0 <= spread_m <= 2 or not 0.05 <= lateral_m <= 3:
            raise SimConfigError("spread_m must be in 0..2 and lateral_m in 0.05..3")
        if abs(lane_m) > 10:
            raise SimConfigError(f"lane_m {lane_m} must lie within 10 m of the path")
        approach = door.approach_m
        for name, where in (("stop_at_m", stop_at_m), ("turn_at_m", turn_at_m)):
            if where is not None and not -approach < where < approach:
                raise SimConfigError(f"{name} {where} must lie within the approach (±{approach})")
        if not 0 <= stop_s <= 3600:
            raise SimConfigError(f"stop_s {stop_s} outside 0..3600")
        if stop_at_m is not None and turn_at_m is not None and stop_at_m > turn_at_m:
            raise SimConfigError("a pallet that turns back stops before it turns")
        if not 0 <= shielded <= len(epcs):
            raise SimConfigError(f"shielded {shielded} outside 0..{len(epcs)} cases")
        if not 1 <= leaks[0] <= leaks[1] <= 100:
            raise SimConfigError(f"leaks {leaks} must be 1 <= low <= high <= 100")
        super().__init__(door, epcs, start=start, speed_mps=speed_mps)
        self.direction = direction
        self.spread_m = spread_m
        self.lane_m = lane_m
        self.turns_back = turn_at_m is not None
        layout = random.Random(layout_seed)
        self._layout = [
            (epc, layout.uniform(-spread_m, spread_m), lane_m + layout.uniform(0.05, lateral_m))
            for epc in self.epcs
        ]
        self._sign = 1.0 if direction is Direction.IN else -1.0
        self.legs = self._plan(stop_at_m, stop_s, turn_at_m)
        self.end = self.legs[-1].t1 + 2 * spread_m / speed_mps
        """When the last case has left the approach (the pass can no longer be read)."""
        self._shield_db = shield_db
        self._leaks = self._plan_leaks(shielded, leaks, f"{layout_seed}:shield")

    @property
    def shielded_epcs(self) -> frozenset[str]:
        """The cases the load shields (they answer only a few times per pass)."""
        return frozenset(self._layout[i][0] for i in self._leaks)

    def _plan(self, stop_at: float | None, stop_s: float, turn_at: float | None) -> list[Leg]:
        """The path as legs, in travel coordinates turned into x by the direction."""
        sign, v, approach = self._sign, self.speed_mps, self.door.approach_m
        points: list[tuple[float, float]] = [(-approach, 0.0)]
        if stop_at is not None and stop_s > 0:
            points.append((stop_at, stop_s))
        if turn_at is not None:
            points.append((turn_at, 0.0))
            points.append((-approach, 0.0))
        else:
            points.append((approach, 0.0))
        legs: list[Leg] = []
        t = self.start
        for (u0, _), (u1, hold) in itertools.pairwise(points):
            t1 = t + abs(u1 - u0) / v
            legs.append(Leg(t, t1, sign * u0, sign * u1))
            t = t1
            if hold:
                legs.append(Leg(t, t + hold, sign * u1, sign * u1))
                t += hold
        return legs

    def _plan_leaks(
        self, shielded: int, leaks: tuple[int, int], seed: str
    ) -> dict[int, list[float]]:
        """When each shielded case answers: a few moments while it is near an antenna."""
        if not shielded:
            return {}
        rng = random.Random(seed)
        inner = sorted(
            range(len(self._layout)),
            key=lambda i: math.hypot(self._layout[i][1], self._layout[i][2] - self.lane_m),
        )[:shielded]
        xs = [ax for _, ax, _ in self._antennas]
        plan: dict[int, list[float]] = {}
        for index in inner:
            offset = self._layout[index][1]
            near: list[float] = []
            t = self.start
            while t <= self.legs[-1].t1:
                x = self.centre_x(t) + offset
                if any(abs(x - ax) <= LEAK_ZONE_M for ax in xs):
                    near.append(t)
                t += LEAK_STEP_S
            count = rng.randint(*leaks)
            plan[index] = sorted(rng.sample(near, min(count, len(near)))) if near else []
        return plan

    def centre_x(self, t: float) -> float:
        """Where the pallet's centre is at time ``t`` (held at the start point before it
        starts; past the end of its path it keeps going the way it went last)."""
        legs = self.legs
        if t <= self.start:
            return legs[0].x0
        for leg in legs:
            if t <= leg.t1:
                return leg.x(t)
        last = legs[-1]
        heading = 1.0 if last.x1 > last.x0 else -1.0
        return last.x1 + heading * (t - last.t1) * self.speed_mps

    def _times_within(self, low: float, high: float) -> tuple[float, float] | None:
        spans = [span for leg in self.legs if (span := leg.times_within(low, high)) is not None]
        if not spans:
            return None
        return min(s[0] for s in spans), max(s[1] for s in spans)

    def read_window(self) -> tuple[float, float]:
        """Times (start, end) outside which no case can be read.

        Conservative: it takes the widest case offset and ignores the lateral offset.
        """
        low, high = self.door.read_zone_m()
        rf = self.door.rf
        if rf.stray_probability:
            low, high = min(low, -rf.stray_range_m), max(high, rf.stray_range_m)
        spread = self.spread_m
        span = self._times_within(low - spread, high + spread)
        return span if span is not None else (self.start, self.start)

    def read(self, now: Round, out: list[Observation]) -> None:
        t, dt, antennas, rng = now
        centre = self.centre_x(t)
        leaks = self._leaks
        cases = [
            (epc, centre + offset, lateral)
            for index, (epc, offset, lateral) in enumerate(self._layout)
            if not leaks or index not in leaks
        ]
        self._read_cases(now, cases, self.door.rf.stray_probability, out)
        for index, moments in leaks.items():
            if any(t - dt < moment <= t for moment in moments):
                self._leak(index, centre, antennas, rng, out)

    def _leak(
        self,
        index: int,
        centre: float,
        antennas: Collection[int],
        rng: random.Random,
        out: list[Observation],
    ) -> None:
        """A shielded case answers once, to the nearest driven antenna, weakened."""
        epc, offset, lateral = self._layout[index]
        driven = [(a, ax, ay) for a, ax, ay in self._antennas if a in antennas]
        if not driven:
            return
        antenna, ax, ay = min(driven, key=lambda a: abs(centre + offset - a[1]))
        loss = loss_of(antennas, antenna)
        if loss and rng.random() >= power_share(loss):
            return  # too little power left to wake a shielded case
        distance = math.hypot(centre + offset - ax, lateral - ay)
        rssi = self.door.rf.rssi(distance, rng, self._shield_db + loss)
        out.append(Observation(epc, antenna, rssi))

    def in_door(self, t: float) -> bool:
        """True while the pallet breaks the photo-eye's beam across the door."""
        return self.present(t) and abs(self.centre_x(t)) <= self.door.pallet_half_length_m

    def door_window(self) -> tuple[float, float]:
        """Times (from, to) the pallet is in the door (beam broken); (start, start) if
        it never reaches it."""
        half = self.door.pallet_half_length_m
        span = self._times_within(-half, half)
        return span if span is not None else (self.start, self.start)

    def gpi_ports(self, t: float) -> Iterable[int]:
        port = self.door.photo_eye_gpi
        return (port,) if port is not None and self.in_door(t) else ()


class CrossTraffic(MovingPallet):
    """A pallet driven across the door's face on one side, along the antennas' line,
    never through the door: read by that side's antennas only (it moved nothing).

    Its path runs laterally from ``-reach_m`` to ``+reach_m`` at ``offset_m`` beyond the
    side's antennas (away from the door).
    """

    def __init__(
        self,
        door: DockDoor,
        epcs: Sequence[str],
        *,
        side: Side,
        start: float,
        speed_mps: float,
        offset_m: float = 0.6,
        reach_m: float = 3.0,
        layout_seed: int | str = 0,
        spread_m: float = 0.3,
    ) -> None:
        check_speed(speed_mps)
        if not 0 <= offset_m <= 20 or not 0.5 <= reach_m <= 50:
            raise SimConfigError("offset_m must be in 0..20 and reach_m in 0.5..50")
        super().__init__(door, epcs, start=start, speed_mps=speed_mps)
        self.side = side
        self.reach_m = reach_m
        x = door.outside_x_m - offset_m if side is Side.OUTSIDE else door.inside_x_m + offset_m
        layout = random.Random(layout_seed)
        self._layout = [
            (epc, x + layout.uniform(-0.2, 0.2), layout.uniform(-spread_m, spread_m))
            for epc in self.epcs
        ]
        self.end = start + (2 * reach_m + 2 * spread_m) / speed_mps

    def centre_y(self, t: float) -> float:
        return -self.reach_m + max(0.0, t - self.start) * self.speed_mps

    def read(self, now: Round, out: list[Observation]) -> None:
        centre = self.centre_y(now.t)
        cases = [(epc, x, centre + offset) for epc, x, offset in self._layout]
        self._read_cases(now, cases, 0.0, out)
