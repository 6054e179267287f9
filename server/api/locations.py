"""Locations: ``/api/v1/locations`` (the site > zone > bin tree) and ``/api/v1/locations.csv``.

Viewers read the locations of their sites; admins create, rename and delete them (a key
restricted to sites only within those sites).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from server.api.auth import Admin, Context, Viewer, check_locations
from server.api.keyset import KeyCursor, decode_key, encode_key
from server.api.params import DEFAULT_PAGE, Limit, Location
from server.api.uploads import CSV_BODY, CSV_IMPORT_RESPONSES, csv_download, read_upload
from server.commands.audit import record_view_change
from server.commands.csv_import import ImportSummary, export_locations, import_locations
from server.commands.locations import (
    LocationFilter,
    create_location,
    delete_location,
    list_locations,
    rename_location,
    require_location,
)
from server.commands.locations import (
    get_location as find_location,
)
from server.commands.masterdata import LocationChanges, LocationFields, LocationView
from server.rules.points import LOCATION_PATTERN, MAX_LOCATION_LENGTH
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["locations"])

LocationPath = Annotated[
    str, Path(pattern=LOCATION_PATTERN, min_length=1, max_length=MAX_LOCATION_LENGTH)
]
REFUSALS: dict[int | str, dict[str, str]] = {
    403: {"description": "The location is outside the key's sites."},
    404: {"description": "No such location."},
    409: {"description": "It exists already, or something still refers to it."},
    422: {"description": "Its parent does not exist."},
}


class LocationPage(BaseModel):
    items: list[LocationView]
    next_cursor: str | None


@router.get("/locations", response_model=LocationPage)
async def get_locations(
    context: Context,
    principal: Viewer,
    under: Location = None,
    kind: Literal["site", "zone", "bin"] | None = None,
    cursor: KeyCursor = None,
    limit: Limit = DEFAULT_PAGE,
) -> LocationPage:
    """Locations by id (each parent before its children); ``under`` includes its subtree."""
    check_locations(principal, under)
    where = LocationFilter(under=under, kind=kind, sites=principal.sites)
    async with context.store.read("listing locations") as conn:
        found, more = await list_locations(conn, where, decode_key(cursor), limit)
    return LocationPage(items=found, next_cursor=encode_key(found[-1].id) if more else None)


@router.get(
    "/locations.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "Every location, by id."}},
)
async def export_locations_csv(context: Context, principal: Viewer) -> StreamingResponse:
    """Every location of the key's sites as CSV (the columns an import takes)."""
    return csv_download(export_locations(context.store, principal.sites), "locations.csv")


@router.post(
    "/locations.csv",
    response_model=ImportSummary,
    openapi_extra=CSV_BODY,
    responses=CSV_IMPORT_RESPONSES,
)
async def import_locations_csv(
    context: Context,
    principal: Admin,
    request: Request,
    dry_run: Annotated[bool, Query(description="Check the file only; write nothing.")] = False,
) -> ImportSummary:
    """Create or rename locations from CSV: all rows or none."""
    data = await read_upload(request)
    async with context.store.begin("importing locations") as conn:
        return await import_locations(
            conn,
            data,
            now_utc(),
            sites=principal.sites,
            dry_run=dry_run,
            actor=principal.name,
        )


@router.get("/locations/{location}", response_model=LocationView, responses=REFUSALS)
async def get_location(context: Context, principal: Viewer, location: LocationPath) -> LocationView:
    check_locations(principal, location)
    async with context.store.read("reading a location") as conn:
        return await require_location(conn, location)


@router.post(
    "/locations",
    response_model=LocationView,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def post_location(context: Context, principal: Admin, fields: LocationFields) -> LocationView:
    """Add a location under an existing parent (a site has none); its kind follows its depth."""
    check_locations(principal, fields.id)
    now = now_utc()
    async with context.store.begin(f"creating location {fields.id}") as conn:
        created = await create_location(conn, fields, now)
        await record_view_change(conn, "location", fields.id, None, created, principal.name, now)
    return created


@router.patch("/locations/{location}", response_model=LocationView, responses=REFUSALS)
async def patch_location(
    context: Context, principal: Admin, location: LocationPath, changes: LocationChanges
) -> LocationView:
    """Rename a location (its id never changes: ledger rows name it)."""
    check_locations(principal, location)
    now = now_utc()
    async with context.store.begin(f"renaming location {location}") as conn:
        before = await find_location(conn, location)
        renamed = await rename_location(conn, location, changes, now)
        await record_view_change(conn, "location", location, before, renamed, principal.name, now)
    return renamed


@router.delete(
    "/locations/{location}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=REFUSALS,
)
async def remove_location(context: Context, principal: Admin, location: LocationPath) -> Response:
    """Delete a location nothing refers to (no children, stock, units or read points)."""
    check_locations(principal, location)
    now = now_utc()
    async with context.store.begin(f"deleting location {location}") as conn:
        before = await find_location(conn, location)
        await delete_location(conn, location)
        await record_view_change(conn, "location", location, before, None, principal.name, now)
    context.store.known_locations.discard(location)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
