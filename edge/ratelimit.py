"""A token bucket: at most ``rate_per_s`` units per second, bursts up to ``capacity``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """Rate limit for the publisher (events per second).

    The bucket starts full. ``delay(n)`` says how long until ``n`` units may go, without
    taking them; ``take(n)`` takes them. A request larger than the capacity is treated as
    one of exactly the capacity, so every request can be served.

    Args:
        rate_per_s: refill rate (> 0).
        capacity: most units available at once (> 0).
        clock: monotonic seconds; tests pass their own.
    """

    def __init__(
        self,
        rate_per_s: float,
        capacity: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or capacity <= 0:
            raise ValueError("rate_per_s and capacity must be > 0")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now

    def delay(self, n: float) -> float:
        """Seconds until ``n`` units are available (0.0 when they are now)."""
        self._refill()
        missing = min(n, self.capacity) - self._tokens
        return max(0.0, missing / self.rate_per_s)

    def take(self, n: float) -> None:
        """Use ``n`` units (the balance never goes below zero)."""
        self._refill()
        self._tokens = max(0.0, self._tokens - min(n, self.capacity))

    async def acquire(self, n: float) -> float:
        """Wait until ``n`` units are available, take them; returns the time waited."""
        waited = 0.0
        # Two rounds suffice (the first wait refills exactly enough); bounded anyway.
        for _ in range(100):
            wait = self.delay(n)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
            waited += wait
        self.take(n)
        return waited
