"""The physical side of a simulated reader: what its antennas can see, and when.

A ``TagField`` holds the things currently in front of a reader: pallets passing through
a dock door, pallets staged beside it, shelves of static stock. The reader asks the
field once per inventory round which tags each antenna read, giving the time, the
antennas it is driving and its random generator. Nothing here sleeps or reads a clock,
so the model is pure and a test can step it through any timeline.

Geometry of a dock door (one axis along the path, metres): the door is at x = 0, the
outside antennas at ``outside_x_m`` (< 0), the inside antennas at ``inside_x_m`` (> 0).
A pallet passing "in" travels from x = -approach to x = +approach, "out" the other way.
Each antenna reads a tag in a round with probability p0·exp(-(d/d0)²) and reports an
RSSI that falls with distance d, so a pallet is read first by the antennas on the side
it comes from, then by both near the door, and last by the side it goes to.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from firmware_sim.errors import SimConfigError

MAX_TAGS_PER_THING = 100_000


class Side(StrEnum):
    OUTSIDE = "outside"
    INSIDE = "inside"


class Direction(StrEnum):
    IN = "in"
    """From outside to inside (a receipt through the door)."""
    OUT = "out"
    """From inside to outside (a shipment)."""


class Observation(NamedTuple):
    """One read of one tag by one antenna in one inventory round."""

    epc_hex: str
    antenna: int
    rssi: int


@dataclass(frozen=True, slots=True)
class RfModel:
    """How read chance and RSSI fall with distance from an antenna.

    Attributes:
        p0: read probability per inventory round right at the antenna.
        d0_m: distance at which the read probability has fallen by 1/e.
        min_probability: the reader's sensitivity floor: a tag whose read chance is
            below this is never read, which gives the read zone a hard edge.
        rssi_near_dbm: RSSI at zero distance.
        rssi_far_dbm: RSSI at ``far_m`` and beyond.
        far_m: distance where RSSI bottoms out.
        rssi_noise_db: standard deviation of the RSSI noise.
    """

    p0: float = 0.98
    d0_m: float = 0.38
    min_probability: float = 0.01
    rssi_near_dbm: float = -40.0
    rssi_far_dbm: float = -75.0
    far_m: float = 2.0
    rssi_noise_db: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.p0 <= 1:
            raise SimConfigError(f"p0 {self.p0} must be in (0, 1]")
        if not 0 < self.min_probability < self.p0:
            raise SimConfigError(f"min_probability {self.min_probability} must be in (0, p0)")
        if self.d0_m <= 0 or self.far_m <= 0:
            raise SimConfigError("d0_m and far_m must be positive")
        if self.rssi_far_dbm > self.rssi_near_dbm:
            raise SimConfigError("rssi_far_dbm must not exceed rssi_near_dbm")
        if not 0 <= self.rssi_noise_db <= 20:
            raise SimConfigError(f"rssi_noise_db {self.rssi_noise_db} outside 0..20")

    def read_probability(self, distance_m: float) -> float:
        """Chance that an antenna reads a tag ``distance_m`` away in one round."""
        p = self.p0 * math.exp(-((distance_m / self.d0_m) ** 2))
        return p if p >= self.min_probability else 0.0

    def reach_m(self) -> float:
        """Distance beyond which a tag is never read (read chance < min_probability)."""
        return self.d0_m * math.sqrt(math.log(self.p0 / self.min_probability))

    def rssi(self, distance_m: float, rng: random.Random) -> int:
        """RSSI (whole dBm, as LLRP's PeakRSSI) of a read at ``distance_m``."""
        fraction = min(1.0, distance_m / self.far_m)
        mean = self.rssi_near_dbm + (self.rssi_far_dbm - self.rssi_near_dbm) * fraction
        value = mean + rng.gauss(0.0, self.rssi_noise_db) if self.rssi_noise_db else mean
        return max(-128, min(127, round(value)))


@dataclass(frozen=True, slots=True)
class DockDoor:
    """A dock door portal: which antennas face which side, and where they are.

    Attributes:
        outside_antennas: antenna ids on the yard side.
        inside_antennas: antenna ids on the warehouse side.
        outside_x_m: position of the outside antennas along the path (< 0).
        inside_x_m: position of the inside antennas along the path (> 0).
        approach_m: how far from the door a passing pallet starts and ends.
        rf: read chance and RSSI against distance.
        photo_eye_gpi: GPI port of the photo-eye across the door (None: no photo-eye).
            Its beam is broken, and the input high, while a pallet is in the door.
        pallet_half_length_m: half the length of a pallet along the path; the beam is
            broken while the pallet's centre is this close to the door.
    """

    outside_antennas: tuple[int, ...] = (1,)
    inside_antennas: tuple[int, ...] = (2,)
    outside_x_m: float = -0.5
    inside_x_m: float = 0.5
    approach_m: float = 2.5
    rf: RfModel = field(default_factory=RfModel)
    photo_eye_gpi: int | None = None
    pallet_half_length_m: float = 0.6

    def __post_init__(self) -> None:
        if not self.outside_antennas or not self.inside_antennas:
            raise SimConfigError("a dock door needs antennas on both sides")
        both = set(self.outside_antennas) & set(self.inside_antennas)
        if both:
            raise SimConfigError(f"antennas {sorted(both)} are on both sides of the door")
        if any(a < 1 for a in (*self.outside_antennas, *self.inside_antennas)):
            raise SimConfigError("antenna ids start at 1")
        if not self.outside_x_m < 0 < self.inside_x_m:
            raise SimConfigError("outside antennas need x < 0 and inside antennas x > 0")
        if self.approach_m <= max(-self.outside_x_m, self.inside_x_m):
            raise SimConfigError("approach_m must lie beyond the antennas")
        if self.photo_eye_gpi is not None and not 1 <= self.photo_eye_gpi <= 0xFFFF:
            raise SimConfigError(f"photo_eye_gpi {self.photo_eye_gpi} must be a port from 1")
        if not 0.05 <= self.pallet_half_length_m < self.approach_m:
            raise SimConfigError("pallet_half_length_m must be in 0.05..approach_m")

    @property
    def antennas(self) -> tuple[int, ...]:
        return (*self.outside_antennas, *self.inside_antennas)

    def side_of(self, antenna: int) -> Side | None:
        """The side an antenna faces; None when it is not part of this door."""
        if antenna in self.outside_antennas:
            return Side.OUTSIDE
        if antenna in self.inside_antennas:
            return Side.INSIDE
        return None

    def antenna_x(self, antenna: int) -> float:
        """Position of an antenna along the path.

        Raises:
            SimConfigError: the antenna is not part of this door.
        """
        side = self.side_of(antenna)
        if side is None:
            raise SimConfigError(f"antenna {antenna} is not part of this door")
        return self.outside_x_m if side is Side.OUTSIDE else self.inside_x_m

    def read_zone_m(self) -> tuple[float, float]:
        """The stretch of path (x from, x to) where any antenna can read a tag."""
        reach = self.rf.reach_m()
        return self.outside_x_m - reach, self.inside_x_m + reach


class FieldThing(Protocol):
    """Something in front of the reader that tags can be read from."""

    def observe(
        self,
        t: float,
        dt: float,
        antennas: Collection[int],
        rng: random.Random,
        out: list[Observation],
    ) -> None:
        """Append the reads of one inventory round at time ``t`` (``dt`` since the last)."""

    def finished(self, t: float) -> bool:
        """True once the thing can never be read again (the field then drops it)."""


class GpiSource(Protocol):
    """Something that drives GPI inputs (a pallet breaking a photo-eye's beam)."""

    def gpi_ports(self, t: float) -> Iterable[int]:
        """The GPI ports this thing holds high at time ``t``."""


def _check_tags(epcs: Sequence[str]) -> tuple[str, ...]:
    if len(epcs) > MAX_TAGS_PER_THING:
        raise SimConfigError(f"{len(epcs)} tags; at most {MAX_TAGS_PER_THING} per thing")
    return tuple(e.lower() for e in epcs)


class PalletPass:
    """A pallet of tagged cases moving through a dock door at constant speed.

    Cases sit at fixed offsets around the pallet's centre (along the path within
    ``spread_m``, and 0.05..``lateral_m`` beside the antennas' line), drawn once from
    ``layout_seed`` so the layout does not depend on the reader's timing.
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
    ) -> None:
        if not 0.05 <= speed_mps <= 20:
            raise SimConfigError(f"speed {speed_mps} m/s outside 0.05..20")
        if not 0 <= spread_m <= 2 or not 0.05 <= lateral_m <= 3:
            raise SimConfigError("spread_m must be in 0..2 and lateral_m in 0.05..3")
        self.door = door
        self.epcs = _check_tags(epcs)
        self.start = start
        self.direction = direction
        self.speed_mps = speed_mps
        self.spread_m = spread_m
        layout = random.Random(layout_seed)
        self._layout = [
            (epc, layout.uniform(-spread_m, spread_m), layout.uniform(0.05, lateral_m))
            for epc in self.epcs
        ]
        self._sign = 1.0 if direction is Direction.IN else -1.0
        self._antennas = [(a, door.antenna_x(a)) for a in door.antennas]
        self.end = start + (2 * door.approach_m + 2 * spread_m) / speed_mps
        """When the last case has left the approach (the pass can no longer be read)."""

    def centre_x(self, t: float) -> float:
        """Where the pallet's centre is at time ``t`` (clamped to the start point)."""
        travelled = max(0.0, t - self.start) * self.speed_mps
        return self._sign * (travelled - self.door.approach_m)

    def read_window(self) -> tuple[float, float]:
        """Times (start, end) outside which no case can be read.

        Conservative: it takes the widest case offset and ignores the lateral offset.
        """
        low, high = self.door.read_zone_m()
        approach = self.door.approach_m
        v = self.speed_mps
        spread = self.spread_m
        if self.direction is Direction.IN:
            enter = (low - spread + approach) / v
            leave = (high + spread + approach) / v
        else:
            enter = (approach - high - spread) / v
            leave = (approach - low + spread) / v
        return self.start + max(0.0, enter), self.start + leave

    def observe(
        self,
        t: float,
        dt: float,
        antennas: Collection[int],
        rng: random.Random,
        out: list[Observation],
    ) -> None:
        if t < self.start or t > self.end:
            return
        centre = self.centre_x(t)
        rf = self.door.rf
        for antenna, ax in self._antennas:
            if antenna not in antennas:
                continue
            for epc, offset, lateral in self._layout:
                distance = math.hypot(centre + offset - ax, lateral)
                p = rf.read_probability(distance)
                if p and rng.random() < p:
                    out.append(Observation(epc, antenna, rf.rssi(distance, rng)))

    def finished(self, t: float) -> bool:
        return t > self.end

    def in_door(self, t: float) -> bool:
        """True while the pallet breaks the photo-eye's beam across the door."""
        if t < self.start or t > self.end:
            return False
        return abs(self.centre_x(t)) <= self.door.pallet_half_length_m

    def door_window(self) -> tuple[float, float]:
        """Times (from, to) the pallet is in the door (beam broken)."""
        half = self.door.pallet_half_length_m
        approach = self.door.approach_m
        v = self.speed_mps
        return self.start + (approach - half) / v, self.start + (approach + half) / v

    def gpi_ports(self, t: float) -> Iterable[int]:
        port = self.door.photo_eye_gpi
        return (port,) if port is not None and self.in_door(t) else ()


class StagedPallet:
    """A pallet parked beside the door: read now and then by one side's antennas only.

    Real staged pallets sit at the edge of one side's read zone, so they are read
    intermittently and never by the far side; the model says so directly instead of
    relying on geometry (a chance per antenna per round, an RSSI at ``distance_m``).
    """

    def __init__(
        self,
        door: DockDoor,
        epcs: Sequence[str],
        *,
        side: Side,
        start: float,
        end: float,
        read_probability: float = 0.02,
        distance_m: float = 1.5,
    ) -> None:
        if end < start:
            raise SimConfigError("a staged pallet must leave after it arrives")
        if not 0 < read_probability <= 1:
            raise SimConfigError(f"read_probability {read_probability} must be in (0, 1]")
        self.door = door
        self.epcs = _check_tags(epcs)
        self.side = side
        self.start = start
        self.end = end
        self.read_probability = read_probability
        self.distance_m = distance_m
        self._antennas = door.outside_antennas if side is Side.OUTSIDE else door.inside_antennas

    def observe(
        self,
        t: float,
        dt: float,
        antennas: Collection[int],
        rng: random.Random,
        out: list[Observation],
    ) -> None:
        if t < self.start or t > self.end:
            return
        rf = self.door.rf
        p = self.read_probability
        for antenna in self._antennas:
            if antenna not in antennas:
                continue
            for epc in self.epcs:
                if rng.random() < p:
                    out.append(Observation(epc, antenna, rf.rssi(self.distance_m, rng)))

    def finished(self, t: float) -> bool:
        return t > self.end


class ShelfPopulation:
    """A static population read continuously at a target rate (shelf mode).

    Each round draws ``reads_per_s · dt`` reads (the fraction carried by chance), each
    of a random tag on a random antenna among ``antennas`` (all the reader drives when
    None). RSSI is uniform in ``rssi_dbm``.
    """

    def __init__(
        self,
        epcs: Sequence[str],
        *,
        reads_per_s: float,
        antennas: Collection[int] | None = None,
        rssi_dbm: tuple[int, int] = (-65, -45),
        start: float = -math.inf,
        end: float = math.inf,
    ) -> None:
        if not epcs:
            raise SimConfigError("a shelf needs at least one tag")
        if not 0 < reads_per_s <= 1_000_000:
            raise SimConfigError(f"reads_per_s {reads_per_s} outside (0, 1e6]")
        if rssi_dbm[0] > rssi_dbm[1]:
            raise SimConfigError("rssi_dbm must be (low, high)")
        self.epcs = _check_tags(epcs)
        self.reads_per_s = reads_per_s
        self.antennas = None if antennas is None else frozenset(antennas)
        self.rssi_dbm = rssi_dbm
        self.start = start
        self.end = end

    def observe(
        self,
        t: float,
        dt: float,
        antennas: Collection[int],
        rng: random.Random,
        out: list[Observation],
    ) -> None:
        if t < self.start or t > self.end:
            return
        usable = sorted(antennas if self.antennas is None else self.antennas & set(antennas))
        if not usable:
            return
        expected = self.reads_per_s * max(0.0, dt)
        count = int(expected)
        if rng.random() < expected - count:
            count += 1
        epcs = self.epcs
        low, high = self.rssi_dbm
        for _ in range(count):
            out.append(Observation(rng.choice(epcs), rng.choice(usable), rng.randint(low, high)))

    def finished(self, t: float) -> bool:
        return t > self.end


class TagField:
    """The things currently in front of one reader; the reader samples it each round."""

    def __init__(self, things: Iterable[FieldThing] = ()) -> None:
        self._things: list[FieldThing] = list(things)

    def add(self, thing: FieldThing) -> None:
        self._things.append(thing)

    def discard(self, thing: FieldThing) -> None:
        """Take ``thing`` out of the field if it is there."""
        if thing in self._things:
            self._things.remove(thing)

    def clear(self) -> None:
        self._things.clear()

    def __len__(self) -> int:
        return len(self._things)

    def __iter__(self) -> Iterator[FieldThing]:
        return iter(list(self._things))

    def gpi_high(self, t: float) -> set[int]:
        """GPI ports the things in the field hold high at time ``t``."""
        high: set[int] = set()
        for thing in self._things:
            # getattr, not isinstance on a runtime Protocol: this runs every few ms.
            ports = getattr(thing, "gpi_ports", None)
            if ports is not None:
                high.update(ports(t))
        return high

    def observe(
        self, t: float, dt: float, antennas: Collection[int], rng: random.Random
    ) -> list[Observation]:
        """All reads of one inventory round at time ``t``; drops finished things.

        Args:
            t: the round's time (the simulator's monotonic clock, seconds).
            dt: seconds since the previous round.
            antennas: the antennas the reader is driving (connected and asked for).
            rng: the reader's random generator (seeded for reproducible runs).
        """
        out: list[Observation] = []
        for thing in self._things:
            thing.observe(t, dt, antennas, rng, out)
        if any(thing.finished(t) for thing in self._things):
            self._things = [thing for thing in self._things if not thing.finished(t)]
        return out
