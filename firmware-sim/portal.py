"""The physical side of a simulated reader: what its antennas can see, and when.

A ``TagField`` holds the things currently in front of a reader: pallets passing through
a dock door, pallets staged beside it, shelves of static stock. The reader asks the
field once per inventory round which tags each antenna read, giving the time, the
antennas it is driving and its random generator. Nothing here sleeps or reads a clock,
so the model is pure and a test can step it through any timeline.

The pieces: ``portal_rf`` (read chance, RSSI and transmit power), ``portal_door`` (the
door's geometry), ``portal_motion`` (pallets driven through or across a door); this
module holds the field itself, the round it asks its things about (``Round``; a
``TimedThing`` is read only between its start and end) and the things that stand still
(``StagedPallet``, ``ShelfPopulation``).

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
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import NamedTuple, Protocol

from firmware_sim.errors import SimConfigError
from firmware_sim.portal_door import DockDoor, Side
from firmware_sim.portal_rf import Observation, loss_of, power_share

MAX_TAGS_PER_THING = 100_000


class Round(NamedTuple):
    """One inventory round, as the things in the field see it."""

    t: float
    """The round's time (the simulator's monotonic clock, seconds)."""
    dt: float
    """Seconds since the previous round."""
    antennas: Collection[int]
    """The antennas the reader is driving (a ``Drive`` when it drives them below full power)."""
    rng: random.Random
    """The reader's random generator (seeded for reproducible runs)."""


class FieldThing(Protocol):
    """Something in front of the reader that tags can be read from."""

    def observe(self, now: Round, out: list[Observation]) -> None:
        """Append the reads of the inventory round ``now``."""

    def finished(self, t: float) -> bool:
        """True once the thing can never be read again (the field then drops it)."""


class GpiSource(Protocol):
    """Something that drives GPI inputs (a pallet breaking a photo-eye's beam)."""

    def gpi_ports(self, t: float) -> Iterable[int]:
        """The GPI ports this thing holds high at time ``t``."""


def check_tags(epcs: Sequence[str]) -> tuple[str, ...]:
    """A thing's tags, lower case.

    Raises:
        SimConfigError: more than ``MAX_TAGS_PER_THING`` of them.
    """
    if len(epcs) > MAX_TAGS_PER_THING:
        raise SimConfigError(f"{len(epcs)} tags; at most {MAX_TAGS_PER_THING} per thing")
    return tuple(e.lower() for e in epcs)


class TimedThing(ABC):
    """A thing in the field from ``start`` to ``end`` (reader clock): read only then,
    dropped after."""

    start: float
    end: float

    def present(self, t: float) -> bool:
        """True while the thing is in the field at time ``t``."""
        return not (t < self.start or t > self.end)

    def observe(self, now: Round, out: list[Observation]) -> None:
        if self.present(now.t):
            self.read(now, out)

    @abstractmethod
    def read(self, now: Round, out: list[Observation]) -> None:
        """Append the reads of the round ``now``, which falls while the thing is present."""

    def finished(self, t: float) -> bool:
        return t > self.end


class StagedPallet(TimedThing):
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
        self.epcs = check_tags(epcs)
        self.side = side
        self.start = start
        self.end = end
        self.read_probability = read_probability
        self.distance_m = distance_m
        self._antennas = door.outside_antennas if side is Side.OUTSIDE else door.inside_antennas

    def read(self, now: Round, out: list[Observation]) -> None:
        antennas, rng = now.antennas, now.rng
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


class ShelfPopulation(TimedThing):
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
        self.epcs = check_tags(epcs)
        self.reads_per_s = reads_per_s
        self.antennas = None if antennas is None else frozenset(antennas)
        self.rssi_dbm = rssi_dbm
        self.start = start
        self.end = end

    def read(self, now: Round, out: list[Observation]) -> None:
        _, dt, antennas, rng = now
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
        now = Round(t, dt, antennas, rng)
        out: list[Observation] = []
        for thing in self._things:
            thing.observe(now, out)
        if any(thing.finished(t) for thing in self._things):
            self._things = [thing for thing in self._things if not thing.finished(t)]
        return out
