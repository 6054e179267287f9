"""Capped exponential backoff with jitter, as a pure policy (no clock, no sleep).

The one backoff of the code base: the edge's reader and scanner reconnects, the MQTT
client's reconnects and the server's webhook retries all draw their delays from it."""

from __future__ import annotations

import random
from collections.abc import Callable

DEFAULT_FACTOR = 2.0
DEFAULT_JITTER = 0.5
"""Share of each delay that is random: with 0.5 a delay is drawn from [base/2, base], so
readers that dropped together (a switch reboot) do not all come back in the same instant."""


class Backoff:
    """Delays between reconnect attempts: ``initial * factor**n``, capped at ``maximum``.

    Each delay is the capped base minus a random share of it (``jitter``), so it never
    exceeds the cap and never falls below ``base * (1 - jitter)``. ``reset()`` after a
    successful connection starts again from ``initial``. ``delay(n)`` is the delay after
    failed attempt ``n`` for callers that keep the count themselves (a retry row in a
    table).

    Args:
        initial: the first base delay in seconds (> 0).
        maximum: the cap in seconds; a cap below ``initial`` caps at ``initial``.
        factor: growth per attempt (>= 1).
        jitter: random share of each delay, 0 (none) to 1 (full jitter).
        rand: source of uniform numbers in [0, 1); tests pass a fixed one.

    Raises:
        ValueError: a parameter is out of range.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        factor: float = DEFAULT_FACTOR,
        jitter: float = DEFAULT_JITTER,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0:
            raise ValueError(f"backoff initial delay must be > 0, got {initial}")
        if factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {factor}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"backoff jitter must be within 0..1, got {jitter}")
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.factor = factor
        self.jitter = jitter
        self._rand = rand
        self._failed = 0

    def base_after(self, attempt: int) -> float:
        """The un-jittered delay after failed attempt ``attempt`` (1-based)."""
        return min(self.maximum, self.initial * self.factor ** min(max(attempt, 1) - 1, 64))

    @property
    def base(self) -> float:
        """The un-jittered delay the next call to ``next_delay`` draws from."""
        return self.base_after(self._failed + 1)

    def delay(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based), jittered."""
        return self.base_after(attempt) * (1.0 - self.jitter * self._rand())

    def next_delay(self) -> float:
        """The delay before the next attempt; grows the base for the one after."""
        self._failed += 1
        return self.delay(self._failed)

    def reset(self) -> None:
        """Start again from ``initial`` (after a connection that worked)."""
        self._failed = 0
