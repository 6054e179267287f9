"""``GET /api/v1/reports/shrinkage``: units shelves lost, by shelf, location and item; JSON,
or CSV (``Accept: text/csv`` or ``/reports/shrinkage.csv``, streamed like the other CSV
reports).

What the continuous counting of shelf readers found (``server.ingest.shelves``): every unit the
sweep recorded missing after it left a watched shelf and was read nowhere, counted by the
shelf's read point, the location it left and its item, with how many are missing still
(not read anywhere since). A key restricted to sites sees only their locations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from server.api.auth import Context, Viewer, check_locations
from server.api.context import Principal
from server.api.history import CSV_MEDIA, wants_csv
from server.api.params import DEFAULT_PAGE, MAX_PAGE, Limit, Location, as_utc
from server.api.report_routes import cells_of, csv_lines
from server.api.uploads import csv_download
from server.ingest.shelves import ShrinkageFilter, shrinkage_report

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


class ShrinkageRow(BaseModel):
    read_point: str | None
    """The shelf's read point."""
    location: str | None
    """Where the units were when they left."""
    sku: str
    gtin: str | None
    name: str
    missing: int
    """Units recorded missing in the range."""
    still_missing: int
    """Of those, units not read anywhere since (still ``missing``)."""
    last_at: datetime
    """When the latest of them became missing."""


class ShrinkageReport(BaseModel):
    items: list[ShrinkageRow]
    """Most missing first; at most ``limit`` rows."""
    total_missing: int
    """Units in the rows listed."""


COLUMNS: Final = (
    "read_point",
    "location",
    "sku",
    "gtin",
    "name",
    "missing",
    "still_missing",
    "last_at",
)
Since = Annotated[
    datetime | None, Query(description="Became missing at or after (no offset: UTC).")
]
Until = Annotated[datetime | None, Query(description="Became missing before (no offset: UTC).")]


async def _report(
    context: Any,
    principal: Principal,
    location: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> ShrinkageReport:
    check_locations(principal, location)
    where = ShrinkageFilter(
        location=location,
        sites=principal.sites,
        since=as_utc(since, "since"),
        until=as_utc(until, "until"),
    )
    async with context.store.read("reporting shrinkage") as conn:
        rows = await shrinkage_report(conn, where, limit=limit)
    items = [ShrinkageRow.model_validate(row) for row in rows]
    return ShrinkageReport(items=items, total_missing=sum(row.missing for row in items))


def _lines(rows: Sequence[ShrinkageRow]) -> AsyncIterator[str]:
    line = cells_of(COLUMNS)
    return csv_lines(COLUMNS, [line(row) for row in rows])


@router.get(
    "/shrinkage", response_model=ShrinkageReport, responses={200: {"content": {CSV_MEDIA: {}}}}
)
async def get_shrinkage(
    request: Request,
    context: Context,
    principal: Viewer,
    location: Location = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = DEFAULT_PAGE,
) -> Any:
    """Shrinkage found by shelf readers, by shelf, location and item (CSV with
    ``Accept: text/csv``)."""
    report = await _report(context, principal, location, since, until, limit)
    if wants_csv(request):
        return csv_download(_lines(report.items), "shrinkage.csv")
    return report


@router.get(
    "/shrinkage.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {CSV_MEDIA: {}}, "description": "The shrinkage report."}},
)
async def get_shrinkage_csv(
    context: Context,
    principal: Viewer,
    location: Location = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = MAX_PAGE,
) -> StreamingResponse:
    """The shrinkage report as CSV: the same filters, up to ``limit`` rows (default all
    up to 1,000), most missing first."""
    report = await _report(context, principal, location, since, until, limit)
    return csv_download(_lines(report.items), "shrinkage.csv")
