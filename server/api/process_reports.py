"""Reports on how the floor's processes run, under ``/api/v1/reports/``, each as JSON, or
as CSV with ``Accept: text/csv`` or the ``.csv`` path (``server.api.report_routes``):

- ``door-throughput``: per read point and hour, what moved and how many passes went
  unresolved;
- ``count-accuracy``: cycle counts, counted against expected, the share within tolerance.

The JSON shapes are in the README ("Reports"); the value reports are in
``server.api.valuation``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from server.api.auth import Context, Viewer, check_locations, check_site
from server.api.history import SiteParam
from server.api.params import DEFAULT_PAGE, Limit, Location
from server.api.report_routes import (
    DEFAULT_PERIOD,
    MAX_PERIOD,
    WindowParams,
    answer,
    cells_of,
    copied,
    report_route,
)
from server.reports.count_accuracy import CountFilter, count_accuracy
from server.reports.doors import door_throughput
from server.store.schema.core import LEDGER_KINDS

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

MAX_DOOR_WINDOW: Final = timedelta(days=92)
DEFAULT_DOOR_WINDOW: Final = timedelta(days=1)

ReadPoint = Annotated[str | None, Query(min_length=1, max_length=256, pattern=r"^\S+$")]


# --- door throughput ------------------------------------------------------------------------


class KindFigures(BaseModel):
    rows: int
    quantity: int


class DoorHourItem(BaseModel):
    bucket: datetime
    """UTC start of the hour."""
    read_point: str
    rows: int
    """Ledger rows the read point's events made in the hour."""
    quantity: int
    kinds: dict[str, KindFigures]
    unresolved: int
    """Passes without a direction in the hour."""
    resolved_later: int
    """Of those, resolved by an operator since."""
    pass_quality: float | None
    """rows / (rows + unresolved); null when the hour had neither."""


class DoorThroughputReport(BaseModel):
    since: datetime
    until: datetime
    items: list[DoorHourItem]


DOOR_COLUMNS: Final = (
    "bucket",
    "read_point",
    "rows",
    "quantity",
    *(f"{kind}_{figure}" for kind in LEDGER_KINDS for figure in ("rows", "quantity")),
    "unresolved",
    "resolved_later",
    "pass_quality",
)


def _door_cells(item: DoorHourItem) -> list[Any]:
    cells: list[Any] = [item.bucket, item.read_point, item.rows, item.quantity]
    for kind in LEDGER_KINDS:
        figures = item.kinds.get(kind)
        cells += [figures.rows, figures.quantity] if figures else [0, 0]
    return [*cells, item.unresolved, item.resolved_later, item.pass_quality]


@report_route(
    router, "/door-throughput", DoorThroughputReport, "Door throughput and pass quality per hour"
)
async def get_door_throughput(
    request: Request,
    context: Context,
    principal: Viewer,
    window: WindowParams,
    read_point: ReadPoint = None,
    site: SiteParam = None,
) -> Any:
    """Per read point and UTC hour over ``since``..``until`` (default the last day, at most
    92 days): ledger rows and quantity by kind, unresolved passes, and the pass quality."""
    if site is not None:
        check_site(principal, site)
    start, end = window.bounds(DEFAULT_DOOR_WINDOW, MAX_DOOR_WINDOW)
    async with context.store.read("reporting door throughput") as conn:
        hours = await door_throughput(conn, start, end, read_point, site, principal.sites)
    items = [
        copied(
            DoorHourItem,
            hour,
            quantity=sum(figures[1] for figures in hour.kinds.values()),
            kinds={
                kind: KindFigures(rows=figures[0], quantity=figures[1])
                for kind, figures in sorted(hour.kinds.items())
            },
        )
        for hour in hours
    ]
    report = DoorThroughputReport(since=start, until=end, items=items)
    return answer(request, report, "door-throughput", DOOR_COLUMNS, _door_cells)


# --- count accuracy -------------------------------------------------------------------------


class CountItem(BaseModel):
    event_id: str
    counted_at: datetime
    location: str
    read_point: str
    lines: int
    """Items counted (and items the books held there that the count did not list)."""
    lines_within: int
    expected: int
    counted: int
    absolute_difference: int
    accuracy: float
    """lines_within / lines."""


class CountAccuracyReport(BaseModel):
    since: datetime
    until: datetime
    tolerance: int
    tolerance_pct: float
    counts: int
    """Counts in the window (``items`` lists the newest ``limit``)."""
    counts_within: int
    """Counts with every line within tolerance."""
    lines: int
    lines_within: int
    line_accuracy: float | None
    """lines_within / lines over the window (null: no counts)."""
    items: list[CountItem]


COUNT_COLUMNS: Final = tuple(CountItem.model_fields)


@report_route(router, "/count-accuracy", CountAccuracyReport, "Cycle counts against the books")
async def get_count_accuracy(
    request: Request,
    context: Context,
    principal: Viewer,
    window: WindowParams,
    site: SiteParam = None,
    location: Location = None,
    tolerance: Annotated[
        int, Query(ge=0, le=1_000_000, description="Units a line may be off and still count.")
    ] = 0,
    tolerance_pct: Annotated[
        float, Query(ge=0, le=100, description="Or this percentage of the expected quantity.")
    ] = 0.0,
    limit: Limit = DEFAULT_PAGE,
) -> Any:
    """Cycle counts over ``since``..``until`` (default the last 30 days), newest first:
    expected against counted per count, and the share of lines within tolerance."""
    if site is not None:
        check_site(principal, site)
    check_locations(principal, location)
    start, end = window.bounds(DEFAULT_PERIOD, MAX_PERIOD)
    where = CountFilter(
        since=start,
        until=end,
        site=site,
        location=location,
        sites=principal.sites,
        tolerance=tolerance,
        tolerance_pct=tolerance_pct,
    )
    async with context.store.read("reporting count accuracy") as conn:
        rows, summary = await count_accuracy(conn, where, limit)
    items = [
        copied(CountItem, row, accuracy=round(row.lines_within / row.lines, 6)) for row in rows
    ]
    report = CountAccuracyReport(
        since=start,
        until=end,
        tolerance=tolerance,
        tolerance_pct=tolerance_pct,
        counts=summary.counts,
        counts_within=summary.counts_within,
        lines=summary.lines,
        lines_within=summary.lines_within,
        line_accuracy=round(summary.lines_within / summary.lines, 6) if summary.lines else None,
        items=items,
    )
    return answer(request, report, "count-accuracy", COUNT_COLUMNS, cells_of(COUNT_COLUMNS))
