"""``GET /api/v1/reports/...``: reports as JSON, or CSV (``Accept: text/csv`` or ``.csv``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from server.api.auth import Context, Viewer, check_site
from server.api.history import CSV_MEDIA, SiteParam, bounded, wants_csv
from server.api.report_routes import cells_of, csv_lines
from server.api.uploads import csv_download
from server.reports.stock import dead_stock

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

MAX_DAYS: Final = 3650
DEAD_STOCK_COLUMNS: Final = ("site", "sku", "gtin", "name", "on_hand", "last_outbound")


class DeadStockItem(BaseModel):
    site: str
    sku: str
    gtin: str | None
    name: str
    on_hand: int
    last_outbound: datetime | None
    """UTC day stock of the item last left the site; null: not within the history."""


class DeadStockReport(BaseModel):
    as_of: datetime
    days: int
    items: list[DeadStockItem]


def _lines(rows: Sequence[DeadStockItem]) -> AsyncIterator[str]:
    line = cells_of(DEAD_STOCK_COLUMNS)
    return csv_lines(DEAD_STOCK_COLUMNS, [line(row) for row in rows])


Days = Annotated[
    int, Query(ge=1, le=MAX_DAYS, description="No stock left the site for this many days.")
]
AsOf = Annotated[datetime | None, Query(description="Default now; no offset means UTC.")]


async def _dead_stock(
    context: Any, principal: Any, days: int, site: str | None, as_of: datetime | None
) -> DeadStockReport:
    if site is not None:
        check_site(principal, site)
    moment = bounded(as_of, "as_of") or datetime.now(UTC)
    async with context.store.read("reporting dead stock") as conn:
        rows = await dead_stock(conn, moment, days, site, principal.sites)
    return DeadStockReport(
        as_of=moment,
        days=days,
        items=[
            DeadStockItem(**{name: getattr(row, name) for name in DEAD_STOCK_COLUMNS})
            for row in rows
        ],
    )


@router.get(
    "/dead-stock", response_model=DeadStockReport, responses={200: {"content": {CSV_MEDIA: {}}}}
)
async def get_dead_stock(
    request: Request,
    context: Context,
    principal: Viewer,
    days: Days = 90,
    site: SiteParam = None,
    as_of: AsOf = None,
) -> Any:
    """Items on hand at a site that no stock of has left that site for ``days`` days
    (shipments, losses, transfers to other sites), with the day it last did."""
    report = await _dead_stock(context, principal, days, site, as_of)
    if wants_csv(request):
        return csv_download(_lines(report.items), "dead-stock.csv")
    return report


@router.get(
    "/dead-stock.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {CSV_MEDIA: {}}, "description": "The dead-stock report."}},
)
async def get_dead_stock_csv(
    context: Context,
    principal: Viewer,
    days: Days = 90,
    site: SiteParam = None,
    as_of: AsOf = None,
) -> StreamingResponse:
    """The dead-stock report as CSV."""
    report = await _dead_stock(context, principal, days, site, as_of)
    return csv_download(_lines(report.items), "dead-stock.csv")
