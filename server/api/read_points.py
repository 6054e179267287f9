"""Read points: ``/api/v1/read-points`` (what a pass at each read point means).

Viewers read those of their sites; admins create, replace and delete the ones managed
through the API. Read points from ``[[read_points]]`` in the server config are listed with
``source: "config"`` and refused for change (409: the config wins at every start).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel

from server.api.auth import Admin, Context, Viewer, check_locations, check_site
from server.api.keyset import KeyCursor, decode_key, encode_key
from server.api.params import DEFAULT_PAGE, Limit
from server.commands.audit import record_view_change
from server.commands.read_points import (
    ReadPointCatalog,
    ReadPointView,
    create_read_point,
    delete_read_point,
    effective_site,
    list_read_points,
    replace_read_point,
    require_read_point,
)
from server.config.settings import ReadPointSettings
from server.errors import Invalid
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["read points"])

READ_POINT_PATH_PATTERN = r"^[A-Za-z0-9._:-]{1,256}$"
"""Ids the API addresses by path (a config read point may use other characters)."""
PointPath = Annotated[str, Path(pattern=READ_POINT_PATH_PATTERN, min_length=1, max_length=256)]
REFUSALS: dict[int | str, dict[str, str]] = {
    403: {"description": "The read point is outside the key's sites."},
    404: {"description": "No such read point."},
    409: {"description": "It exists already, or it is defined in the server config."},
    422: {"description": "Its inbound location does not exist."},
}


def get_catalog(request: Request) -> ReadPointCatalog:
    """FastAPI dependency: the catalog ``create_app`` stored (ingest's, in a server)."""
    return cast(ReadPointCatalog, request.app.state.read_points)


Catalog = Annotated[ReadPointCatalog, Depends(get_catalog)]


class ReadPointPage(BaseModel):
    items: list[ReadPointView]
    next_cursor: str | None


@router.get("/read-points", response_model=ReadPointPage)
async def get_read_points(
    context: Context,
    principal: Viewer,
    cursor: KeyCursor = None,
    limit: Limit = DEFAULT_PAGE,
) -> ReadPointPage:
    """Read points by id, from the config and from the API."""
    async with context.store.read("listing read points") as conn:
        found, more = await list_read_points(conn, principal.sites, decode_key(cursor), limit)
    return ReadPointPage(items=found, next_cursor=encode_key(found[-1].id) if more else None)


@router.get("/read-points/{point_id}", response_model=ReadPointView, responses=REFUSALS)
async def get_read_point(context: Context, principal: Viewer, point_id: PointPath) -> ReadPointView:
    async with context.store.read("reading a read point") as conn:
        found = await require_read_point(conn, point_id)
    check_site(principal, found.site, f"read point {point_id!r}")
    return found


def _check(principal: Admin, point: ReadPointSettings) -> None:
    check_site(principal, effective_site(point), f"read point {point.id!r}")
    check_locations(principal, point.inbound_location)


@router.post(
    "/read-points",
    response_model=ReadPointView,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def post_read_point(
    context: Context, principal: Admin, catalog: Catalog, point: ReadPointSettings
) -> ReadPointView:
    """Add a read point (the keys of a ``[[read_points]]`` entry); ingest uses it at once."""
    _check(principal, point)
    now = now_utc()
    async with context.store.begin(f"creating read point {point.id}") as conn:
        created = await create_read_point(conn, point, now)
        await record_view_change(conn, "read_point", point.id, None, created, principal.name, now)
    catalog.invalidate()
    return created


@router.put("/read-points/{point_id}", response_model=ReadPointView, responses=REFUSALS)
async def put_read_point(
    context: Context,
    principal: Admin,
    catalog: Catalog,
    point_id: PointPath,
    point: ReadPointSettings,
) -> ReadPointView:
    """Replace what a pass at an API read point means (the id stays)."""
    if point.id != point_id:
        raise Invalid("id", f"the body's id {point.id!r} is not the path's {point_id!r}")
    _check(principal, point)
    async with context.store.begin(f"replacing read point {point_id}") as conn:
        current = await require_read_point(conn, point_id)
        check_site(principal, current.site, f"read point {point_id!r}")
        now = now_utc()
        replaced = await replace_read_point(conn, point, now)
        await record_view_change(
            conn, "read_point", point_id, current, replaced, principal.name, now
        )
    catalog.invalidate()
    return replaced


@router.delete(
    "/read-points/{point_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=REFUSALS,
)
async def remove_read_point(
    context: Context, principal: Admin, catalog: Catalog, point_id: PointPath
) -> Response:
    """Delete an API read point; events naming it afterwards are dead-lettered."""
    async with context.store.begin(f"deleting read point {point_id}") as conn:
        current = await require_read_point(conn, point_id)
        check_site(principal, current.site, f"read point {point_id!r}")
        await delete_read_point(conn, point_id)
        await record_view_change(
            conn, "read_point", point_id, current, None, principal.name, now_utc()
        )
    catalog.invalidate()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
