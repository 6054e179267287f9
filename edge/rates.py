"""Rates from counts: the one place the edge turns counters into per-second figures.

``RateMeter`` reads a growing counter (events appended, scans) and gives the rate since
its previous reading; ``ReadRates`` counts reads per antenna and gives each antenna's rate
over the last completed window, one ``RateMeter`` per antenna over cumulative totals.
Both are pure: the caller passes its clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from edge.readers.types import TagRead

RATE_WINDOW_S: Final = 5.0


class RateMeter:
    """Turns a growing counter into a per-second rate between two readings."""

    def __init__(self, now: float) -> None:
        self._total = 0
        self._at = now

    def rate(self, total: int, now: float) -> float:
        """Events per second since the previous call (0 on a counter reset or no time)."""
        elapsed = now - self._at
        delta = total - self._total
        self._total, self._at = total, now
        if elapsed <= 0 or delta < 0:
            return 0.0
        return delta / elapsed


class ReadRates:
    """Reads per second per antenna over the last completed window (pure; caller's clock)."""

    def __init__(self, window_s: float = RATE_WINDOW_S, now: float = 0.0) -> None:
        self._window = window_s
        self._started = now
        self._totals: dict[int, int] = {}
        self._meters: dict[int, RateMeter] = {}
        self._rates: dict[int, float] = {}

    def add(self, reads: Iterable[TagRead], now: float) -> None:
        totals = self._totals
        for read in reads:
            totals[read.antenna] = totals.get(read.antenna, 0) + 1
        if now - self._started >= self._window:
            self._roll(now)

    def per_antenna(self, now: float) -> dict[int, float]:
        if now - self._started >= self._window:
            self._roll(now)
        return dict(self._rates)

    def _roll(self, now: float) -> None:
        rates: dict[int, float] = {}
        for antenna, total in self._totals.items():
            meter = self._meters.get(antenna)
            if meter is None:
                meter = self._meters[antenna] = RateMeter(self._started)
            rate = meter.rate(total, now)
            if rate > 0:
                rates[antenna] = rate
        self._rates = rates
        self._started = now
