"""Item categories in the store: read, list, create, rename, delete; writers run inside the
caller's transaction. A category's code never changes (items refer to it), only its name."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.masterdata import CategoryChanges, CategoryFields, CategoryView
from server.errors import Conflict, NotFound
from server.store.database import refused_on_conflict
from server.store.rows import first_view, keyset_page, refuse_while_referenced
from server.store.schema.core import items
from server.store.schema.master import item_categories


async def get_category(conn: AsyncConnection, code: str) -> CategoryView | None:
    query = sa.select(item_categories).where(item_categories.c.code == code)
    return await first_view(conn, query, CategoryView)


async def require_category(conn: AsyncConnection, code: str) -> CategoryView:
    found = await get_category(conn, code)
    if found is None:
        raise NotFound(f"no item category {code!r}")
    return found


async def list_categories(
    conn: AsyncConnection, after: str | None, limit: int
) -> tuple[list[CategoryView], bool]:
    """Categories by code after ``after`` (exclusive), and whether more follow."""
    query = sa.select(item_categories)
    return await keyset_page(conn, query, item_categories.c.code, CategoryView, after, limit)


async def create_category(
    conn: AsyncConnection, fields: CategoryFields, now: datetime
) -> CategoryView:
    """Add a category.

    Raises:
        Conflict: the code exists already.
    """
    if await get_category(conn, fields.code) is not None:
        raise Conflict(f"item category {fields.code!r} exists already")
    async with refused_on_conflict(f"item category {fields.code!r}"):
        await conn.execute(
            item_categories.insert().values(
                code=fields.code, name=fields.name, created_at=now, updated_at=now
            )
        )
    return await require_category(conn, fields.code)


async def rename_category(
    conn: AsyncConnection, code: str, changes: CategoryChanges, now: datetime
) -> CategoryView:
    """Give a category a new name.

    Raises:
        NotFound: no such category.
    """
    await require_category(conn, code)
    await conn.execute(
        item_categories.update()
        .where(item_categories.c.code == code)
        .values(name=changes.name, updated_at=now)
    )
    return await require_category(conn, code)


async def delete_category(conn: AsyncConnection, code: str) -> None:
    """Remove a category no item uses.

    Raises:
        NotFound: no such category.
        Conflict: items still use it.
    """
    await require_category(conn, code)
    await refuse_while_referenced(
        conn,
        [
            (
                f"item category {code!r} still has items; move them to another category first",
                sa.select(items.c.id).where(items.c.category == code),
            )
        ],
    )
    async with refused_on_conflict(Conflict(f"item category {code!r} is still referred to")):
        await conn.execute(item_categories.delete().where(item_categories.c.code == code))
