"""A dock door portal: which antennas face which side of the door, and where they are.

Geometry (one axis along the path, metres): the door is at x = 0, the outside antennas
at ``outside_x_m`` (< 0), the inside antennas at ``inside_x_m`` (> 0). A pallet passing
"in" travels from x = -approach to x = +approach, "out" the other way, so it is read
first by the antennas on the side it comes from, then by both near the door, and last by
the side it goes to. Antennas may also sit apart laterally (``outside_y_m`` /
``inside_y_m``), as at a wide door with two lanes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from firmware_sim.errors import SimConfigError
from firmware_sim.portal_rf import RfModel


class Side(StrEnum):
    OUTSIDE = "outside"
    INSIDE = "inside"


class Direction(StrEnum):
    IN = "in"
    """From outside to inside (a receipt through the door)."""
    OUT = "out"
    """From inside to outside (a shipment)."""


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
