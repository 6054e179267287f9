"""``/api/v1/unresolved-passes``: portal passes without a direction, and their resolution.

Viewers list them (narrowed to their sites); operators and admins resolve them, one by id
(``POST /{id}/resolve``) or several at once, a whole group or a list of ids
(``POST /resolve``). ``server.commands.unresolved`` holds the rules.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from server.api.auth import Context, Operator, Viewer, check_site
from server.api.cursor import encode_cursor
from server.api.event_pages import EventPageParams
from server.api.params import TEXT_PATTERN, Epc
from server.api.read_points import Catalog
from server.commands.unresolved import (
    MAX_ROW_ID,
    BulkResolveRequest,
    PassQuery,
    Resolver,
    ResolveRequest,
    ResolveResult,
    StateFilter,
    UnresolvedPassView,
    get_pass,
    list_passes,
    resolve,
)
from server.store.schema.passes import MAX_GROUP
from wire.models import now_utc
from wire.topics import ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["unresolved passes"])

PassPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="The unresolved pass's id.")]
RESOLVE_RESPONSES: dict[int | str, dict[str, str]] = {
    404: {"description": "No such pass (or none the key may see); no open pass in the group."},
    409: {
        "description": "Resolved already; a group spanning read points or too large; the read "
        "point is no longer configured."
    },
    422: {"description": "The body is invalid."},
}


class UnresolvedPassPage(BaseModel):
    items: list[UnresolvedPassView]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page; null on the last page."""


@router.get("/unresolved-passes", response_model=UnresolvedPassPage)
async def get_unresolved_passes(
    context: Context,
    principal: Viewer,
    state: Annotated[StateFilter, Query(description="open (default), resolved, or all.")] = "open",
    read_point: Annotated[
        str | None, Query(min_length=1, max_length=256, pattern=TEXT_PATTERN)
    ] = None,
    group: Annotated[
        str | None, Query(min_length=1, max_length=MAX_GROUP, pattern=TEXT_PATTERN)
    ] = None,
    epc: Epc = None,
    site: Annotated[str | None, Query(pattern=ID_PATTERN, max_length=64)] = None,
    *,
    page: EventPageParams,
) -> UnresolvedPassPage:
    """Passes that reached the server without a direction, newest first (event time, id).

    ``since``/``until`` bound the event time (a window of at most 366 days when both are
    given). Keys restricted to sites see their sites' passes only.
    """
    if site is not None:
        check_site(principal, site)
    start, end = page.window()
    after = page.after()
    query = PassQuery(
        state=state,
        read_point=read_point,
        group=group,
        epc=epc,
        site=site,
        since=start,
        until=end,
        after=after,
        limit=page.limit,
        sites=principal.sites,
    )
    async with context.store.read("listing unresolved passes") as conn:
        rows, more = await list_passes(conn, query)
    next_cursor = encode_cursor(rows[-1].time, rows[-1].id) if more and rows else None
    return UnresolvedPassPage(items=rows, next_cursor=next_cursor)


@router.get(
    "/unresolved-passes/{pass_id}",
    response_model=UnresolvedPassView,
    responses={404: {"description": "No such pass (or none the key may see)."}},
)
async def get_unresolved_pass(
    context: Context, principal: Viewer, pass_id: PassPath
) -> UnresolvedPassView:
    """One pass, open or resolved."""
    async with context.store.read("reading an unresolved pass") as conn:
        return await get_pass(conn, pass_id, principal.sites)


async def _resolve(
    context: Context,
    catalog: Catalog,
    principal: Operator,
    selection: int | BulkResolveRequest,
    request: ResolveRequest,
) -> ResolveResult:
    store = context.store
    resolver = Resolver(principal.name, principal.sites)
    table = await catalog.table()
    async with store.begin("resolving unresolved passes") as conn:
        result, created = await resolve(
            conn,
            selection,
            request.direction,
            resolver,
            read_points=table,
            known_locations=store.known_locations,
            now=now_utc(),
            policy=context.policy,
        )
    store.known_locations.update(created)
    for view in result.items:
        context.metrics.resolved_passes.labels(
            read_point=view.read_point, direction=request.direction
        ).inc()
    return result


@router.post(
    "/unresolved-passes/resolve", response_model=ResolveResult, responses=RESOLVE_RESPONSES
)
async def post_resolve_many(
    context: Context, catalog: Catalog, principal: Operator, request: BulkResolveRequest
) -> ResolveResult:
    """Resolve a whole group (``{"group", "direction"}``, optionally ``read_point``) or a
    list of passes (``{"ids": [...], "direction"}``) in one transaction.

    A group resolves its open passes; ``ids`` must all be open (409 otherwise, nothing
    resolved). The passes are applied together, in event-time order.
    """
    return await _resolve(context, catalog, principal, request, request)


@router.post(
    "/unresolved-passes/{pass_id}/resolve",
    response_model=ResolveResult,
    responses=RESOLVE_RESPONSES,
)
async def post_resolve(
    context: Context,
    catalog: Catalog,
    principal: Operator,
    pass_id: PassPath,
    request: ResolveRequest,
) -> ResolveResult:
    """Say what happened at the door: ``in`` or ``out`` applies the read point's stock
    effect for that direction (once; its ``movement_id`` can be reversed like any
    movement), ``ignore`` records that nothing moved. A second resolve is 409."""
    return await _resolve(context, catalog, principal, pass_id, request)
