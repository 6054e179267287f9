"""How an antenna reads a tag: read chance and RSSI against distance, at some power.

Each antenna reads a tag in a round with probability p0·exp(-(d/d0)²) and reports an
RSSI that falls with distance d (``RfModel``). A wide ``d0_m`` gives overlapping fields;
``stray_probability`` adds multipath reads of tags an antenna cannot see directly.

Transmit power. The model is calibrated at the reader's full power. A reader asked for
less (an RFTransmitter in the ROSpec) drives each antenna ``loss_db`` below its maximum
(``Drive``): the forward link reaches a tag only as far as a distance ``10^(loss/20)``
times shorter (free-space loss is 20 dB per decade of distance, so 6 dB halves the read
zone), and the tag's answer comes back ``loss_db`` weaker. Things without geometry
(staged pallets, shelves, multipath) lose read chance in proportion to the power,
``10^(-loss/10)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from firmware_sim.errors import SimConfigError


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
