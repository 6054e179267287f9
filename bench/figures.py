"""What a benchmark hands back: figures with their target and how they were measured.

A ``Figure`` is one number that goes into ``bench/results.json`` under its key and one row
of ``BENCHMARKS.md``. Benchmarks never judge themselves: the target is data here, and the
report says whether it was met.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Comparison = Literal[">=", "<="]

_COMPARE: Final[Mapping[Comparison, Callable[[float, float], bool]]] = {
    ">=": operator.ge,
    "<=": operator.le,
}


@dataclass(frozen=True, slots=True)
class Target:
    """A bound a figure should meet, e.g. ``Target(">=", 20_000)``."""

    comparison: Comparison
    bound: float

    def met(self, value: float) -> bool:
        return _COMPARE[self.comparison](value, self.bound)

    def __str__(self) -> str:
        symbol = "≥" if self.comparison == ">=" else "≤"
        return f"{symbol} {_number(self.bound)}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure.

    Args:
        key: the ``results.json`` key, e.g. ``edge.reads_per_s``.
        value: the measured number (never hard-coded).
        unit: what the number counts, for people (``reads/s``, ``ms``, ``MB``).
        how: how it was measured, one or two sentences for the table.
        target: the bound from the issue, if it sets one.
        detail: secondary numbers (runs, ratios, counts) kept in ``results.json``.
    """

    key: str
    value: float
    unit: str
    how: str
    target: Target | None = None
    detail: Mapping[str, object] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None when there is no target."""
        return None if self.target is None else self.target.met(self.value)


def _number(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def fmt(value: float) -> str:
    """A number as the report prints it: thousands separated, sensible precision."""
    return _number(value)
