"""Item categories: ``/api/v1/item-categories`` (viewers read, admins for all sites write)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel

from server.api.auth import Context, GlobalAdmin, Viewer
from server.api.keyset import KeyCursor, decode_key, encode_key
from server.api.params import DEFAULT_PAGE, Limit
from server.commands.audit import record_view_change
from server.commands.categories import (
    create_category,
    delete_category,
    list_categories,
    rename_category,
    require_category,
)
from server.commands.categories import (
    get_category as find_category,
)
from server.commands.masterdata import (
    CATEGORY_PATTERN,
    CategoryChanges,
    CategoryFields,
    CategoryView,
)
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["item categories"])

CodePath = Annotated[str, Path(pattern=CATEGORY_PATTERN, min_length=1, max_length=64)]
REFUSALS: dict[int | str, dict[str, str]] = {
    404: {"description": "No category with that code."},
    409: {"description": "The code exists already, or items still use the category."},
}


class CategoryPage(BaseModel):
    items: list[CategoryView]
    next_cursor: str | None


@router.get("/item-categories", response_model=CategoryPage)
async def get_categories(
    context: Context,
    _: Viewer,
    cursor: KeyCursor = None,
    limit: Limit = DEFAULT_PAGE,
) -> CategoryPage:
    """Item categories by code."""
    async with context.store.read("listing item categories") as conn:
        found, more = await list_categories(conn, decode_key(cursor), limit)
    return CategoryPage(items=found, next_cursor=encode_key(found[-1].code) if more else None)


@router.get("/item-categories/{code}", response_model=CategoryView, responses=REFUSALS)
async def get_category(context: Context, _: Viewer, code: CodePath) -> CategoryView:
    async with context.store.read("reading an item category") as conn:
        return await require_category(conn, code)


@router.post(
    "/item-categories",
    response_model=CategoryView,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def post_category(
    context: Context, principal: GlobalAdmin, fields: CategoryFields
) -> CategoryView:
    now = now_utc()
    async with context.store.begin(f"creating item category {fields.code}") as conn:
        created = await create_category(conn, fields, now)
        await record_view_change(conn, "category", fields.code, None, created, principal.name, now)
    return created


@router.patch("/item-categories/{code}", response_model=CategoryView, responses=REFUSALS)
async def patch_category(
    context: Context, principal: GlobalAdmin, code: CodePath, changes: CategoryChanges
) -> CategoryView:
    """Rename a category (its code stays; items refer to it)."""
    now = now_utc()
    async with context.store.begin(f"renaming item category {code}") as conn:
        before = await find_category(conn, code)
        renamed = await rename_category(conn, code, changes, now)
        await record_view_change(conn, "category", code, before, renamed, principal.name, now)
    return renamed


@router.delete(
    "/item-categories/{code}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=REFUSALS,
)
async def remove_category(context: Context, principal: GlobalAdmin, code: CodePath) -> Response:
    """Delete a category no item uses."""
    now = now_utc()
    async with context.store.begin(f"deleting item category {code}") as conn:
        before = await find_category(conn, code)
        await delete_category(conn, code)
        await record_view_change(conn, "category", code, before, None, principal.name, now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
