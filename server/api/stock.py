"""``GET /api/v1/stock``: on hand by item and location, now or as of a past time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from server.api.auth import Context, Viewer, check_locations
from server.api.params import DEFAULT_PAGE, Gtin, Limit, Location, Sku, as_utc, gtin14
from server.queries.stock import StockQuery, stock
from server.queries.stock_history import stock_as_of
from server.queries.views import StockRow

router = APIRouter(prefix="/api/v1", tags=["stock"])
MAX_OFFSET = 1_000_000


class StockPage(BaseModel):
    items: list[StockRow]
    total: int
    """Rows matching the filters, of which this page holds up to ``limit``."""
    limit: int
    offset: int


@router.get("/stock", response_model=StockPage)
async def get_stock(
    context: Context,
    principal: Viewer,
    gtin: Gtin = None,
    sku: Sku = None,
    location: Location = None,
    include_zero: Annotated[
        bool, Query(description="Also list item/location pairs whose on hand is 0.")
    ] = False,
    limit: Limit = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    as_of: Annotated[
        datetime | None,
        Query(
            description="On hand as of this time (inclusive), summed from the ledger; "
            "no offset means UTC. Default: now (the maintained balances)."
        ),
    ] = None,
) -> StockPage:
    """On hand per item and location; ``location`` includes its subtree.

    A key restricted to sites sees only their locations.
    """
    check_locations(principal, location)
    query = StockQuery(
        gtin=gtin14(gtin),
        sku=sku,
        location=location,
        include_zero=include_zero,
        limit=limit,
        offset=offset,
        sites=principal.sites,
    )
    when = as_utc(as_of, "as_of")
    async with context.store.read("listing stock") as conn:
        if when is None:
            rows, total = await stock(conn, query)
        else:
            rows, total = await stock_as_of(conn, query, when)
    return StockPage(items=rows, total=total, limit=limit, offset=offset)
