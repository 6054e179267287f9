"""Count accuracy (``/reports/count-accuracy``): how far the books were from what was counted.

From ``count_results`` (``server.store.schema.counts``): one line per item of each cycle count,
the quantity the books held at the counted location as of the count and the quantity
counted. A line is **within tolerance** when ``|counted - expected|`` is at most the larger
of ``tolerance`` (units) and ``tolerance_pct`` percent of what was expected. Per count: its
lines, how many were within, the quantities; over the window: the share of lines within
tolerance and the share of counts with every line within.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.queries.subtree import in_subtree
from server.store.schema.counts import count_results


@dataclass(frozen=True, slots=True)
class CountFilter:
    since: datetime
    until: datetime
    site: str | None = None
    location: str | None = None
    sites: frozenset[str] = frozenset()
    tolerance: int = 0
    tolerance_pct: float = 0.0


@dataclass(frozen=True, slots=True)
class CountRow:
    event_id: str
    counted_at: datetime
    location: str
    read_point: str
    lines: int
    lines_within: int
    expected: int
    counted: int
    absolute_difference: int


@dataclass(frozen=True, slots=True)
class CountSummary:
    counts: int
    counts_within: int
    lines: int
    lines_within: int


def _conditions(where: CountFilter) -> list[sa.ColumnElement[bool]]:
    row = count_results.c
    conditions: list[sa.ColumnElement[bool]] = [
        row.event_time >= where.since,
        row.event_time < where.until,
    ]
    if where.site is not None:
        conditions.append(row.site == where.site)
    if where.location is not None:
        conditions.append(in_subtree(row.location, where.location))
    if where.sites:
        conditions.append(row.site.in_(sorted(where.sites)))
    return conditions


def _within(where: CountFilter) -> sa.ColumnElement[Any]:
    row = count_results.c
    share = row.expected * (where.tolerance_pct / 100.0)
    allowed = sa.case((share > where.tolerance, share), else_=float(where.tolerance))
    difference = sa.func.abs(row.counted - row.expected)
    return sa.case((difference <= allowed, 1), else_=0)


async def count_accuracy(
    conn: AsyncConnection, where: CountFilter, limit: int
) -> tuple[list[CountRow], CountSummary]:
    """The newest ``limit`` counts in the window, and the summary over all of them."""
    row = count_results.c
    within = _within(where)
    per_count = (
        sa.select(
            row.event_id,
            row.event_time,
            row.location,
            row.read_point,
            sa.func.count().label("lines"),
            sa.func.sum(within).label("lines_within"),
            sa.func.sum(row.expected).label("expected"),
            sa.func.sum(row.counted).label("counted"),
            sa.func.sum(sa.func.abs(row.counted - row.expected)).label("difference"),
        )
        .where(*_conditions(where))
        .group_by(row.event_id, row.event_time, row.location, row.read_point)
    )
    rows = [
        CountRow(
            event_id=values[0],
            counted_at=values[1],
            location=values[2],
            read_point=values[3],
            lines=int(values[4]),
            lines_within=int(values[5]),
            expected=int(values[6]),
            counted=int(values[7]),
            absolute_difference=int(values[8]),
        )
        for values in await conn.execute(
            per_count.order_by(row.event_time.desc(), row.event_id.desc()).limit(limit)
        )
    ]
    counts = per_count.subquery("per_count")
    total = (
        await conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(
                    sa.func.sum(sa.case((counts.c.lines_within == counts.c.lines, 1), else_=0)),
                    0,
                ),
                sa.func.coalesce(sa.func.sum(counts.c.lines), 0),
                sa.func.coalesce(sa.func.sum(counts.c.lines_within), 0),
            )
        )
    ).one()
    return rows, CountSummary(int(total[0]), int(total[1]), int(total[2]), int(total[3]))
