"""``GET /api/v1/movements``: ledger rows newest first, with cursor pagination."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from server.api.auth import Context, Viewer, check_locations
from server.api.cursor import encode_cursor
from server.api.event_pages import EventPageParams
from server.api.params import (
    TEXT_PATTERN,
    Epc,
    Gtin,
    Location,
    Sku,
    gtin14,
)
from server.queries.movements import MovementQuery, movements
from server.queries.views import MovementView
from server.rules.model import LedgerKind

router = APIRouter(prefix="/api/v1", tags=["movements"])


class MovementPage(BaseModel):
    items: list[MovementView]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page; null on the last page."""


@router.get("/movements", response_model=MovementPage)
async def get_movements(
    context: Context,
    principal: Viewer,
    epc: Epc = None,
    gtin: Gtin = None,
    sku: Sku = None,
    location: Location = None,
    read_point: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=256,
            pattern=r"^\S+$",
            description="Rows a read point recorded.",
        ),
    ] = None,
    kind: Annotated[
        LedgerKind | None,
        Query(description="receipt, shipment, transfer, count_adjustment or loss."),
    ] = None,
    actor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            pattern=TEXT_PATTERN,
            description="The gateway or API key name that recorded the row.",
        ),
    ] = None,
    *,
    page: EventPageParams,
) -> MovementPage:
    """Ledger rows newest first (event time, then id).

    ``since``/``until`` bound the event time; when both are given ``since`` must be before
    ``until`` and the window at most 366 days. ``location`` matches rows whose from or to
    location is in its subtree.
    """
    check_locations(principal, location)
    start, end = page.window()
    after = page.after()
    query = MovementQuery(
        epc=epc,
        gtin=gtin14(gtin),
        sku=sku,
        location=location,
        read_point=read_point,
        kind=kind,
        actor=actor,
        since=start,
        until=end,
        after=after,
        limit=page.limit,
        sites=principal.sites,
    )
    async with context.store.read("listing movements") as conn:
        rows, more = await movements(conn, query)
    next_cursor = encode_cursor(rows[-1].event_time, rows[-1].id) if more and rows else None
    return MovementPage(items=rows, next_cursor=next_cursor)
