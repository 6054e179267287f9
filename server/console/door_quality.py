"""How well each door decided directions today: the Doors page's pass quality.

A *tag pass* is one tag crossing a read point. Today's (UTC day) at each door are the
ledger rows the edge's directed passes made there (``ledger.confidence`` is set on
exactly those) and the passes kept without a direction (``unresolved_passes``, open or
since resolved). The share with a direction, their mean confidence and how many fell
below ``LOW_CONFIDENCE`` say whether a door needs its antennas looked at.

Both reads walk their time index from midnight, so they cost what today holds, not what
the history holds.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.schema.core import ledger
from server.store.schema.passes import unresolved_passes

LOW_CONFIDENCE: Final = 0.5
"""Below this a direction is doubtful (the edge's ``[[portals]] min_confidence`` default)."""


@dataclass(frozen=True, slots=True)
class DoorQuality:
    """One door's tag passes since ``since``."""

    directed: int = 0
    """With a direction from the edge."""
    undirected: int = 0
    """Kept without one (to be resolved by a person)."""
    mean_confidence: float | None = None
    low_confidence: int = 0
    """Directed passes below ``LOW_CONFIDENCE``."""

    @property
    def passes(self) -> int:
        return self.directed + self.undirected

    @property
    def directed_share(self) -> float | None:
        return self.directed / self.passes if self.passes else None


async def pass_quality(
    conn: AsyncConnection, doors: Collection[str], since: datetime
) -> dict[str, DoorQuality]:
    """Each of ``doors`` with a pass since ``since``: its ``DoorQuality``."""
    if not doors:
        return {}
    wanted = sorted(doors)
    directed = await conn.execute(
        sa.select(
            ledger.c.read_point,
            sa.func.count(),
            sa.func.avg(ledger.c.confidence),
            sa.func.sum(sa.case((ledger.c.confidence < LOW_CONFIDENCE, 1), else_=0)),
        )
        .where(
            ledger.c.event_time >= since,
            ledger.c.confidence.is_not(None),
            ledger.c.read_point.in_(wanted),
        )
        .group_by(ledger.c.read_point)
    )
    found: dict[str, DoorQuality] = {
        door: DoorQuality(int(count), 0, float(mean), int(low or 0))
        for door, count, mean, low in directed
    }
    undirected = await conn.execute(
        sa.select(unresolved_passes.c.read_point, sa.func.count())
        .where(unresolved_passes.c.event_time >= since, unresolved_passes.c.read_point.in_(wanted))
        .group_by(unresolved_passes.c.read_point)
    )
    for door, count in undirected:
        before = found.get(door, DoorQuality())
        found[door] = DoorQuality(
            before.directed, int(count), before.mean_confidence, before.low_confidence
        )
    return found
