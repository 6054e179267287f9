"""``GET /api/v1/reports/shrinkage``: units shelves lost, by shelf, location and item (JSON).

What the continuous counting of shelf readers found (``server.shelves``): every unit the
sweep recorded missing after it left a watched shelf and was read nowhere, counted by the
shelf's read point, the location it left and its item, with how many are missing still
(not read anywhere since). A key restricted to sites sees only their locations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from server.api.auth import Context, Viewer, check_locations
from server.api.params import DEFAULT_PAGE, Limit, Location, as_utc
from server.shelves import ShrinkageFilter, shrinkage_report

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


@router.get("/shrinkage", response_model=ShrinkageReport)
async def get_shrinkage(
    context: Context,
    principal: Viewer,
    location: Location = None,
    since: Annotated[
        datetime | None, Query(description="Became missing at or after (no offset: UTC).")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Became missing before (no offset: UTC).")
    ] = None,
    limit: Limit = DEFAULT_PAGE,
) -> ShrinkageReport:
    """Shrinkage found by shelf readers, by shelf, location and item."""
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
