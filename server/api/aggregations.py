"""``/api/v1/aggregations``: what a pallet (SSCC) holds (``server.commands.pallets``).

Viewers list pallets and read one; operators record a pallet's contents (all of it, which
also applies the pallet's events held while its contents were unknown) and remove them.
Pallets are not site-bound (an SSCC is unique worldwide); a key restricted to sites
releases only held events of its sites.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel

from server.api.auth import Context, Operator, Viewer
from server.api.params import DEFAULT_PAGE, Epc, Gtin, Limit, gtin14
from server.api.read_points import Catalog
from server.commands.pallets import (
    MAX_PARENT_TEXT,
    AggregationQuery,
    AggregationRequest,
    AggregationResult,
    AggregationView,
    check_lines,
    get_aggregation,
    list_aggregations,
    parse_parent,
    record,
    release_held,
    remove,
)
from server.errors import Invalid, NotFound
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["aggregations"])

SSCC_PATTERN: Final = r"^\d{18}$"
SsccPath = Annotated[str, Path(pattern=SSCC_PATTERN, description="The SSCC's 18 digits.")]


class AggregationPage(BaseModel):
    items: list[AggregationView]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null on the last page."""


@router.get("/aggregations", response_model=AggregationPage)
async def get_aggregations(
    context: Context,
    principal: Viewer,
    sscc: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_PARENT_TEXT,
            description="One pallet: its SSCC in any form (digits, (00)..., EPC URN, "
            "Digital Link URI).",
        ),
    ] = None,
    child: Epc = None,
    gtin: Gtin = None,
    cursor: Annotated[str | None, Query(pattern=SSCC_PATTERN)] = None,
    limit: Limit = DEFAULT_PAGE,
) -> AggregationPage:
    """Pallets and what they hold, by SSCC; ``child`` finds the pallet a unit is on,
    ``gtin`` the pallets holding an item."""
    try:
        wanted = parse_parent(sscc).sscc if sscc is not None else None
    except Invalid as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"sscc: {err.reason}") from err
    query = AggregationQuery(sscc=wanted, child=child, gtin=gtin14(gtin), after=cursor, limit=limit)
    async with context.store.read("listing aggregations") as conn:
        views, more = await list_aggregations(conn, query)
    return AggregationPage(items=views, next_cursor=views[-1].sscc if more and views else None)


@router.get(
    "/aggregations/{sscc}",
    response_model=AggregationView,
    responses={404: {"description": "No contents are recorded for this pallet."}},
)
async def get_one(context: Context, principal: Viewer, sscc: SsccPath) -> AggregationView:
    """One pallet and what it holds."""
    async with context.store.read("reading an aggregation") as conn:
        return await get_aggregation(conn, sscc)


@router.post(
    "/aggregations",
    response_model=AggregationResult,
    responses={422: {"description": "The body is invalid: not an SSCC, a bad EPC or GTIN."}},
)
async def post_aggregation(
    context: Context, catalog: Catalog, principal: Operator, request: AggregationRequest
) -> AggregationResult:
    """Record what a pallet holds (replacing what was recorded for it). Events of the
    pallet held while its contents were unknown (``unknown_pallet``) are applied now."""
    parent = parse_parent(request.parent)
    if not request.children and not request.quantities:
        raise Invalid("children", "a pallet holds something: list children or quantities")
    lines = check_lines(
        request.children,
        [(line.gtin, line.lot, line.qty) for line in request.quantities],
        "",
    )
    store = context.store
    table = await catalog.table()
    now = now_utc()
    async with store.begin("recording an aggregation") as conn:
        await record(conn, parent, lines, source="api", actor=principal.name, now=now)
        released = await release_held(
            conn,
            parent.sscc,
            read_points=table,
            known_locations=store.known_locations,
            now=now,
            policy=context.policy,
            sites=principal.sites,
        )
        view = await get_aggregation(conn, parent.sscc)
    store.known_locations.update(released.new_locations)
    return AggregationResult(
        aggregation=view,
        released=released.released,
        still_held=released.still_held,
        movements=released.movements,
    )


@router.delete(
    "/aggregations/{sscc}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No contents are recorded for this pallet."}},
)
async def delete_aggregation(context: Context, principal: Operator, sscc: SsccPath) -> Response:
    """Forget what a pallet holds (it was broken down): its next event is an unknown pallet's."""
    async with context.store.begin("removing an aggregation") as conn:
        if not await remove(conn, sscc):
            raise NotFound(f"no contents are recorded for pallet {sscc}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
