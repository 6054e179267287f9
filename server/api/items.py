"""Items: ``/api/v1/items`` (CRUD; viewers read, admins for all sites write) and
``/api/v1/items.csv`` (export, and all-or-nothing import)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from server.api.auth import Context, GlobalAdmin, Viewer
from server.api.keyset import KeyCursor, decode_key, encode_key
from server.api.params import DEFAULT_PAGE, Limit
from server.api.uploads import CSV_BODY, CSV_IMPORT_RESPONSES, csv_download, read_upload
from server.commands.audit import record_view_change
from server.commands.csv_import import ImportSummary, export_items, import_items
from server.commands.items import (
    ItemFilter,
    create_item,
    delete_item,
    list_items,
    require_item,
    update_item,
)
from server.commands.items import (
    get_item as find_item,
)
from server.commands.masterdata import (
    CATEGORY_PATTERN,
    GTIN_INPUT_PATTERN,
    NAME_PATTERN,
    SKU_PATTERN,
    ItemChanges,
    ItemDetail,
    ItemFields,
    normalize_gtin,
)
from server.errors import Invalid
from server.store.schema.master import InventoryType
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["items"])

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, min_length=1, max_length=64)]
REFUSALS: dict[int | str, dict[str, str]] = {
    404: {"description": "No item with that SKU."},
    409: {"description": "The SKU or GTIN belongs to another item, or the item is in use."},
    422: {"description": "A field is invalid or names something that does not exist."},
}


class ItemPage(BaseModel):
    items: list[ItemDetail]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null on the last page."""


@router.get("/items", response_model=ItemPage)
async def get_items(
    context: Context,
    _: Viewer,
    gtin: Annotated[str | None, Query(pattern=GTIN_INPUT_PATTERN)] = None,
    category: Annotated[str | None, Query(pattern=CATEGORY_PATTERN, max_length=64)] = None,
    inventory_type: InventoryType | None = None,
    reviewed: bool | None = None,
    search: Annotated[
        str | None,
        Query(
            min_length=1, max_length=64, pattern=NAME_PATTERN, description="Part of SKU or name."
        ),
    ] = None,
    cursor: KeyCursor = None,
    limit: Limit = DEFAULT_PAGE,
) -> ItemPage:
    """Items by SKU; ``reviewed=false`` lists those ingest created for unknown GTINs."""
    try:
        gtin14 = normalize_gtin(gtin) if gtin is not None else None
    except ValueError as err:
        raise Invalid("gtin", str(err)) from err
    where = ItemFilter(
        gtin=gtin14,
        category=category,
        inventory_type=inventory_type,
        reviewed=reviewed,
        search=search,
    )
    async with context.store.read("listing items") as conn:
        found, more = await list_items(conn, where, decode_key(cursor), limit)
    return ItemPage(items=found, next_cursor=encode_key(found[-1].sku) if more else None)


@router.get(
    "/items.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "Every item, by SKU."}},
)
async def export_items_csv(context: Context, _: Viewer) -> StreamingResponse:
    """Every item as CSV (the columns an import takes)."""
    return csv_download(export_items(context.store), "items.csv")


@router.post(
    "/items.csv",
    response_model=ImportSummary,
    openapi_extra=CSV_BODY,
    responses=CSV_IMPORT_RESPONSES,
)
async def import_items_csv(
    context: Context,
    principal: GlobalAdmin,
    request: Request,
    dry_run: Annotated[bool, Query(description="Check the file only; write nothing.")] = False,
) -> ImportSummary:
    """Create or change items from CSV: all rows or none (see the README for the rules)."""
    data = await read_upload(request)
    async with context.store.begin("importing items") as conn:
        return await import_items(conn, data, now_utc(), dry_run=dry_run, actor=principal.name)


@router.get("/items/{sku}", response_model=ItemDetail, responses=REFUSALS)
async def get_item(context: Context, _: Viewer, sku: SkuPath) -> ItemDetail:
    async with context.store.read("reading an item") as conn:
        return await require_item(conn, sku)


@router.post(
    "/items", response_model=ItemDetail, status_code=status.HTTP_201_CREATED, responses=REFUSALS
)
async def post_item(context: Context, principal: GlobalAdmin, fields: ItemFields) -> ItemDetail:
    """Add an item (reviewed unless it says otherwise)."""
    now = now_utc()
    async with context.store.begin(f"creating item {fields.sku}") as conn:
        created = await create_item(conn, fields, now)
        await record_view_change(conn, "item", created.sku, None, created, principal.name, now)
    return created


@router.patch("/items/{sku}", response_model=ItemDetail, responses=REFUSALS)
async def patch_item(
    context: Context, principal: GlobalAdmin, sku: SkuPath, changes: ItemChanges
) -> ItemDetail:
    """Change the fields given (null clears an optional field); the SKU may change too."""
    values = changes.values()
    now = now_utc()
    async with context.store.begin(f"changing item {sku}") as conn:
        before = await find_item(conn, sku)
        changed = await update_item(conn, sku, values, now)
        await record_view_change(conn, "item", sku, before, changed, principal.name, now)
    return changed


@router.delete(
    "/items/{sku}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=REFUSALS,
)
async def remove_item(context: Context, principal: GlobalAdmin, sku: SkuPath) -> Response:
    """Delete an item nothing refers to (items that ever moved stay)."""
    now = now_utc()
    async with context.store.begin(f"deleting item {sku}") as conn:
        before = await find_item(conn, sku)
        await delete_item(conn, sku)
        await record_view_change(conn, "item", sku, before, None, principal.name, now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
