"""Door throughput and pass quality per read point and UTC hour (``/reports/door-throughput``).

Counted from the ledger rows that name a read point (``read_point`` set: what the doors'
and scanners' events moved) and from the unresolved passes (``server.store.schema.passes``: passes
that reached the server without a direction), over a window of at most
``MAX_HOURS`` of hours, so its cost follows the window, not the ledger:

- ``rows`` and ``quantity`` per ledger kind (receipt, shipment, transfer, ...);
- ``unresolved``: passes without a direction seen in that hour (whatever became of them
  later), ``resolved_later`` of them since resolved by an operator;
- ``pass_quality``: the share of the hour's passes that moved stock on their own,
  ``rows / (rows + unresolved)`` (null when there were none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.history.check import _bucket as sql_bucket
from server.store.schema.core import ledger
from server.store.schema.passes import unresolved_passes
from server.store.sites import in_sites


@dataclass(slots=True)
class DoorHour:
    bucket: datetime
    read_point: str
    kinds: dict[str, list[int]] = field(default_factory=dict)
    """Ledger kind -> [rows, quantity]."""
    unresolved: int = 0
    resolved_later: int = 0

    @property
    def rows(self) -> int:
        return sum(figures[0] for figures in self.kinds.values())

    @property
    def pass_quality(self) -> float | None:
        passes = self.rows + self.unresolved
        return round(self.rows / passes, 6) if passes else None


def _as_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


async def door_throughput(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    read_point: str | None,
    site: str | None,
    sites: frozenset[str],
) -> list[DoorHour]:
    """Hours (oldest first) and read points with any row or pass in ``since``..``until``."""
    row = ledger.c
    hour = sql_bucket(conn, row.event_time, "hour")
    conditions: list[sa.ColumnElement[bool]] = [
        row.event_time >= since,
        row.event_time < until,
        row.read_point.is_not(None),
    ]
    if read_point is not None:
        conditions.append(row.read_point == read_point)
    place = sa.func.coalesce(row.to_location, row.from_location)
    if site is not None:
        conditions.append(in_sites(place, [site]))
    if sites:
        conditions.append(in_sites(place, sites))
    hours: dict[tuple[datetime, str], DoorHour] = {}

    def at(bucket: Any, point: str) -> DoorHour:
        key = (_as_time(bucket), point)
        found = hours.get(key)
        if found is None:
            found = hours[key] = DoorHour(key[0], point)
        return found

    for bucket, point, kind, count, quantity in await conn.execute(
        sa.select(hour, row.read_point, row.kind, sa.func.count(), sa.func.sum(row.quantity))
        .where(*conditions)
        .group_by(hour, row.read_point, row.kind)
    ):
        at(bucket, point).kinds[kind] = [int(count), int(quantity)]
    passes = unresolved_passes.c
    pass_hour = sql_bucket(conn, passes.event_time, "hour")
    pass_conditions: list[sa.ColumnElement[bool]] = [
        passes.event_time >= since,
        passes.event_time < until,
    ]
    if read_point is not None:
        pass_conditions.append(passes.read_point == read_point)
    if site is not None:
        pass_conditions.append(passes.site == site)
    if sites:
        pass_conditions.append(passes.site.in_(sorted(sites)))
    resolved = sa.func.sum(sa.case((passes.state == "resolved", 1), else_=0))
    for bucket, point, count, done in await conn.execute(
        sa.select(pass_hour, passes.read_point, sa.func.count(), resolved)
        .where(*pass_conditions)
        .group_by(pass_hour, passes.read_point)
    ):
        found = at(bucket, point)
        found.unresolved = int(count)
        found.resolved_later = int(done or 0)
    return [hours[key] for key in sorted(hours)]
