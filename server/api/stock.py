"""``GET /api/v1/stock``: on hand by item and location."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from server.api.auth import Context, Viewer
from server.api.params import DEFAULT_PAGE, Gtin, Limit, Location, Sku, gtin14
from server.queries import StockQuery, stock
from server.views import StockRow

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
    _: Viewer,
    gtin: Gtin = None,
    sku: Sku = None,
    location: Location = None,
    include_zero: Annotated[
        bool, Query(description="Also list item/location pairs whose on hand is 0.")
    ] = False,
    limit: Limit = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> StockPage:
    """On hand per item and location; ``location`` includes its subtree."""
    query = StockQuery(
        gtin=gtin14(gtin),
        sku=sku,
        location=location,
        include_zero=include_zero,
        limit=limit,
        offset=offset,
    )
    async with context.store.read("listing stock") as conn:
        rows, total = await stock(conn, query)
    return StockPage(items=rows, total=total, limit=limit, offset=offset)
