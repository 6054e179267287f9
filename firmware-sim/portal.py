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

The harder physics of real doorways, each off by default so the old scenarios read as
they did:

* overlapping fields: a wide ``d0_m`` lets the far antenna read a tag through most of its
  pass, always weaker than the near one (RSSI still falls with distance);
* multipath: ``stray_probability`` is the chance per antenna and round that a reflection
  lets an antenna read a tag it cannot see directly, anywhere within ``stray_range_m`` of
  the door, at about ``stray_rssi_dbm`` (weak);
* lanes: antennas sit at a lateral position (``outside_y_m``/``inside_y_m``) and a pallet
  drives along a lane (``lane_m``), so two pallets can pass a wide door side by side;
* motion: a pallet may stop on its way (``stop_at_m`` for ``stop_s``) and may turn back at
  ``turn_at_m`` (it entered part way and backed out: it moved nothing);
* shielding: the inner cases of a dense pallet answer only a few times per pass (``leaks``
  reads, at random moments while they are near the antennas, at ``shield_db`` less);
* cross traffic: a pallet driven along the door's outside (or inside) face, across the
  path, never through the door.

Transmit power. The model is calibrated at the reader's full power. A reader asked for
less (an RFTransmitter in the ROSpec) drives each antenna ``loss_db`` below its maximum
(``Drive``): the forward link reaches a tag only as far as a distance ``10^(loss/20)``
times shorter (free-space loss is 20 dB per decade of distance, so 6 dB halves the read
zone), and the tag's answer comes back ``loss_db`` weaker. Things without geometry
(staged pallets, shelves, multipath) lose read chance in proportion to the power,
``10^(-loss/10)``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, NamedTuple, Protocol

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


class Drive(Collection[int]):
    """The antennas a reader drives in one round, each with its power below the maximum.

    A ``Collection`` of antenna ids, so things that ignore power just test membership.
    """

    __slots__ = ("_loss",)

    def __init__(self, loss_db: Mapping[int, float]) -> None:
        self._loss = dict(loss_db)

    def __contains__(self, antenna: object) -> bool:
        return antenna in self._loss

    def __iter__(self) -> Iterator[int]:
        return iter(self._loss)

    def __len__(self) -> int:
        return len(self._loss)

    def loss_db(self, antenna: int) -> float:
        return self._loss.get(antenna, 0.0)


def loss_of(antennas: Collection[int], antenna: int) -> float:
    """How far below full power ``antenna`` is driven (0 unless ``antennas`` is a Drive)."""
    return antennas.loss_db(antenna) if isinstance(antennas, Drive) else 0.0


def range_scale(loss_db: float) -> float:
    """Factor a distance grows by, in the read model, at ``loss_db`` below full power."""
    return 10 ** (loss_db / 20) if loss_db else 1.0


def power_share(loss_db: float) -> float:
    """Share of full power at ``loss_db`` below it (for reads without geometry)."""
    return 10 ** (-loss_db / 10) if loss_db else 1.0


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
        stray_probability: chance per antenna and round of a multipath read of a tag the
            antenna does not read directly (0: none).
        stray_rssi_dbm: mean RSSI of a multipath read.
        stray_range_m: multipath reads reach tags this close to the door (along the path).
    """

    p0: float = 0.98
    d0_m: float = 0.38
    min_probability: float = 0.01
    rssi_near_dbm: float = -40.0
    rssi_far_dbm: float = -75.0
    far_m: float = 2.0
    rssi_noise_db: float = 1.5
    stray_probability: float = 0.0
    stray_rssi_dbm: float = -72.0
    stray_range_m: float = 1.5

    def __post_init__(self) -> None:
        if not 0 <= self.stray_probability <= 0.5:
            raise SimConfigError(f"stray_probability {self.stray_probability} outside 0..0.5")
        if not 0 < self.stray_range_m <= 20:
            raise SimConfigError(f"stray_range_m {self.stray_range_m} outside (0, 20]")
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

    def rssi(self, distance_m: float, rng: random.Random, loss_db: float = 0.0) -> int:
        """RSSI (whole dBm, as LLRP's PeakRSSI) of a read at ``distance_m``.

        ``loss_db`` is extra path loss (a shielded case, a reduced transmit power).
        """
        fraction = min(1.0, distance_m / self.far_m)
        mean = self.rssi_near_dbm + (self.rssi_far_dbm - self.rssi_near_dbm) * fraction - loss_db
        value = mean + rng.gauss(0.0, self.rssi_noise_db) if self.rssi_noise_db else mean
        return max(-128, min(127, round(value)))

    def stray_rssi(self, rng: random.Random, loss_db: float = 0.0) -> int:
        """RSSI of a multipath read: weak, and noisier than a direct one."""
        value = self.stray_rssi_dbm - loss_db + rng.gauss(0.0, self.rssi_noise_db + 2.0)
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
        outside_y_m: lateral position of each outside antenna (empty: all at 0).
        inside_y_m: lateral position of each inside antenna (empty: all at 0).
    """

    outside_antennas: tuple[int, ...] = (1,)
    inside_antennas: tuple[int, ...] = (2,)
    outside_x_m: float = -0.5
    inside_x_m: float = 0.5
    approach_m: float = 2.5
    rf: RfModel = field(default_factory=RfModel)
    photo_eye_gpi: int | None = None
    pallet_half_length_m: float = 0.6
    outside_y_m: tuple[float, ...] = ()
    inside_y_m: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name, ys, antennas in (
            ("outside_y_m", self.outside_y_m, self.outside_antennas),
            ("inside_y_m", self.inside_y_m, self.inside_antennas),
        ):
            if ys and len(ys) != len(antennas):
                raise SimConfigError(f"{name} needs one position per antenna ({len(antennas)})")
            if any(abs(y) > 10 for y in ys):
                raise SimConfigError(f"{name} positions must lie within 10 m of the path")
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

    def antenna_y(self, antenna: int) -> float:
        """Lateral position of an antenna (0 unless the door says otherwise).

        Raises:
            SimConfigError: the antenna is not part of this door.
        """
        for antennas, ys in (
            (self.outside_antennas, self.outside_y_m),
            (self.inside_antennas, self.inside_y_m),
        ):
            if antenna in antennas:
                return ys[antennas.index(antenna)] if ys else 0.0
        raise SimConfigError(f"antenna {antenna} is not part of this door")

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


LEAK_ZONE_M: Final = 0.5
"""A shielded case answers only while it is this close (along the path) to an antenna."""
LEAK_STEP_S: Final = 0.01


class PalletPass:
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
        if not 0.05 <= speed_mps <= 20:
            raise SimConfigError(f"speed {speed_mps} m/s outside 0.05..20")
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
        self.door = door
        self.epcs = _check_tags(epcs)
        self.start = start
        self.direction = direction
        self.speed_mps = speed_mps
        self.spread_m = spread_m
        self.lane_m = lane_m
        self.turns_back = turn_at_m is not None
        layout = random.Random(layout_seed)
        self._layout = [
            (epc, layout.uniform(-spread_m, spread_m), lane_m + layout.uniform(0.05, lateral_m))
            for epc in self.epcs
        ]
        self._sign = 1.0 if direction is Direction.IN else -1.0
        self._antennas = [(a, door.antenna_x(a), door.antenna_y(a)) for a in door.antennas]
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
        leaks = self._leaks
        stray = rf.stray_probability
        for antenna, ax, ay in self._antennas:
            if antenna not in antennas:
                continue
            loss = loss_of(antennas, antenna)
            scale = range_scale(loss)
            stray_p = stray * power_share(loss)
            for index, (epc, offset, lateral) in enumerate(self._layout):
                if leaks and index in leaks:
                    continue
                distance = math.hypot(centre + offset - ax, lateral - ay)
                p = rf.read_probability(distance * scale)
                if p and rng.random() < p:
                    out.append(Observation(epc, antenna, rf.rssi(distance, rng, loss)))
                elif (
                    stray_p and abs(centre + offset) <= rf.stray_range_m and rng.random() < stray_p
                ):
                    out.append(Observation(epc, antenna, rf.stray_rssi(rng, loss)))
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

    def finished(self, t: float) -> bool:
        return t > self.end

    def in_door(self, t: float) -> bool:
        """True while the pallet breaks the photo-eye's beam across the door."""
        if t < self.start or t > self.end:
            return False
        return abs(self.centre_x(t)) <= self.door.pallet_half_length_m

    def door_window(self) -> tuple[float, float]:
        """Times (from, to) the pallet is in the door (beam broken); (start, start) if
        it never reaches it."""
        half = self.door.pallet_half_length_m
        span = self._times_within(-half, half)
        return span if span is not None else (self.start, self.start)

    def gpi_ports(self, t: float) -> Iterable[int]:
        port = self.door.photo_eye_gpi
        return (port,) if port is not None and self.in_door(t) else ()


class CrossTraffic:
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
        if not 0.05 <= speed_mps <= 20:
            raise SimConfigError(f"speed {speed_mps} m/s outside 0.05..20")
        if not 0 <= offset_m <= 20 or not 0.5 <= reach_m <= 50:
            raise SimConfigError("offset_m must be in 0..20 and reach_m in 0.5..50")
        self.door = door
        self.epcs = _check_tags(epcs)
        self.side = side
        self.start = start
        self.speed_mps = speed_mps
        self.reach_m = reach_m
        x = door.outside_x_m - offset_m if side is Side.OUTSIDE else door.inside_x_m + offset_m
        layout = random.Random(layout_seed)
        self._layout = [
            (epc, x + layout.uniform(-0.2, 0.2), layout.uniform(-spread_m, spread_m))
            for epc in self.epcs
        ]
        self._antennas = [(a, door.antenna_x(a), door.antenna_y(a)) for a in door.antennas]
        self.end = start + (2 * reach_m + 2 * spread_m) / speed_mps

    def centre_y(self, t: float) -> float:
        return -self.reach_m + max(0.0, t - self.start) * self.speed_mps

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
        centre = self.centre_y(t)
        rf = self.door.rf
        for antenna, ax, ay in self._antennas:
            if antenna not in antennas:
                continue
            loss = loss_of(antennas, antenna)
            scale = range_scale(loss)
            for epc, x, offset in self._layout:
                distance = math.hypot(x - ax, centre + offset - ay)
                p = rf.read_probability(distance * scale)
                if p and rng.random() < p:
                    out.append(Observation(epc, antenna, rf.rssi(distance, rng, loss)))

    def finished(self, t: float) -> bool:
        return t > self.end


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
            loss = loss_of(antennas, antenna)
            chance = p * power_share(loss)
            for epc in self.epcs:
                if rng.random() < chance:
                    out.append(Observation(epc, antenna, rf.rssi(self.distance_m, rng, loss)))

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
            antenna = rng.choice(usable)
            loss = loss_of(antennas, antenna)
            if loss and rng.random() >= power_share(loss):
                continue
            rssi = rng.randint(low, high) - round(loss)
            out.append(Observation(rng.choice(epcs), antenna, rssi))

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
