"""Items in the store: read, list, create, change, delete (the rules are in
``server.commands.masterdata``); writers run inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.masterdata import ItemDetail, ItemFields
from server.errors import Conflict, Invalid, NotFound
from server.ingest.references import lock_for_delete
from server.store.database import refused_on_conflict
from server.store.rows import first_view, keyset_page, refuse_while_referenced, rows_with_keys
from server.store.schema.core import balances, items, ledger, units
from server.store.schema.master import item_categories

_ITEM_COLUMNS = tuple(items.c[name] for name in ItemDetail.model_fields)


@dataclass(frozen=True, slots=True)
class ItemFilter:
    gtin: str | None = None
    category: str | None = None
    inventory_type: str | None = None
    reviewed: bool | None = None
    search: str | None = None
    """Case-insensitive substring of the SKU or the name."""


async def get_item(conn: AsyncConnection, sku: str) -> ItemDetail | None:
    return await first_view(conn, sa.select(*_ITEM_COLUMNS).where(items.c.sku == sku), ItemDetail)


async def items_by_sku(conn: AsyncConnection, skus: Sequence[str]) -> dict[str, ItemDetail]:
    """The items of ``skus`` that exist, by SKU."""
    rows = await rows_with_keys(conn, sa.select(*_ITEM_COLUMNS), items.c.sku, skus)
    details = (ItemDetail.model_validate(row._mapping) for row in rows)
    return {detail.sku: detail for detail in details}


async def require_item(conn: AsyncConnection, sku: str) -> ItemDetail:
    found = await get_item(conn, sku)
    if found is None:
        raise NotFound(f"no item with SKU {sku!r}")
    return found


async def list_items(
    conn: AsyncConnection, where: ItemFilter, after: str | None, limit: int
) -> tuple[list[ItemDetail], bool]:
    """Items by SKU after ``after`` (exclusive), and whether more follow."""
    conditions: list[sa.ColumnElement[bool]] = []
    if where.gtin is not None:
        conditions.append(items.c.gtin == where.gtin)
    if where.category is not None:
        conditions.append(items.c.category == where.category)
    if where.inventory_type is not None:
        conditions.append(items.c.inventory_type == where.inventory_type)
    if where.reviewed is not None:
        conditions.append(items.c.reviewed.is_(where.reviewed))
    if where.search is not None:
        term = where.search.lower()
        conditions.append(
            sa.or_(
                sa.func.lower(items.c.sku).contains(term, autoescape=True),
                sa.func.lower(items.c.name).contains(term, autoescape=True),
            )
        )
    query = sa.select(*_ITEM_COLUMNS).where(*conditions)
    return await keyset_page(conn, query, items.c.sku, ItemDetail, after, limit)


async def _check_category(conn: AsyncConnection, code: str | None) -> None:
    if code is None:
        return
    exists = await conn.scalar(
        sa.select(item_categories.c.code).where(item_categories.c.code == code)
    )
    if exists is None:
        raise Invalid("category", f"no item category {code!r}; create it first")


async def _gtin_owner(conn: AsyncConnection, gtin: str) -> str | None:
    owner: str | None = await conn.scalar(sa.select(items.c.sku).where(items.c.gtin == gtin))
    return owner


async def create_item(conn: AsyncConnection, fields: ItemFields, now: datetime) -> ItemDetail:
    """Add an item to the master.

    Raises:
        Conflict: the SKU or the GTIN belongs to another item already.
        Invalid: the category does not exist.
    """
    if await get_item(conn, fields.sku) is not None:
        raise Conflict(f"an item with SKU {fields.sku!r} exists already")
    if fields.gtin is not None and (owner := await _gtin_owner(conn, fields.gtin)) is not None:
        raise Conflict(f"GTIN {fields.gtin} belongs to item {owner!r} already")
    await _check_category(conn, fields.category)
    async with refused_on_conflict(f"item {fields.sku!r}"):
        await conn.execute(
            items.insert().values(**fields.model_dump(), created_at=now, updated_at=now)
        )
    return await require_item(conn, fields.sku)


async def update_item(
    conn: AsyncConnection, sku: str, changes: Mapping[str, Any], now: datetime
) -> ItemDetail:
    """Change the given fields of the item with ``sku``.

    Raises:
        NotFound: no such item.
        Conflict: the new SKU or GTIN belongs to another item.
        Invalid: the new category does not exist.
    """
    current = await require_item(conn, sku)
    new_sku = changes.get("sku")
    if new_sku is not None and new_sku != sku and await get_item(conn, new_sku) is not None:
        raise Conflict(f"an item with SKU {new_sku!r} exists already")
    gtin = changes.get("gtin")
    if gtin is not None and (owner := await _gtin_owner(conn, gtin)) not in (None, sku):
        raise Conflict(f"GTIN {gtin} belongs to item {owner!r} already")
    await _check_category(conn, changes.get("category"))
    if changes:
        async with refused_on_conflict(f"item {sku!r}"):
            await conn.execute(
                items.update().where(items.c.id == current.id).values(**changes, updated_at=now)
            )
    return await require_item(conn, new_sku if new_sku is not None else sku)


async def delete_item(conn: AsyncConnection, sku: str) -> None:
    """Remove an item nothing refers to.

    Raises:
        NotFound: no such item.
        Conflict: ledger rows, balances or units refer to it.
    """
    item = await require_item(conn, sku)
    await lock_for_delete(conn, items.c.id, item.id)
    await refuse_while_referenced(
        conn,
        [
            (
                f"item {sku!r} has ledger rows; items that moved are never deleted",
                sa.select(ledger.c.id).where(ledger.c.item_id == item.id),
            ),
            (
                f"item {sku!r} has balances",
                sa.select(balances.c.item_id).where(balances.c.item_id == item.id),
            ),
            (
                f"item {sku!r} has units",
                sa.select(units.c.epc).where(units.c.item_id == item.id),
            ),
        ],
    )
    async with refused_on_conflict(
        Conflict(f"item {sku!r} is still referred to; it cannot be deleted")
    ):
        await conn.execute(items.delete().where(items.c.id == item.id))
