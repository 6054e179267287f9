"""The store's one translation of a broken constraint into a refusal, on SQLite and PostgreSQL.

The commands check what they can before writing, so through the API these refusals show
only when another request gets in between; here the statements break the constraints
directly.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from server.errors import Conflict, ImportRejected, RowError, StoreError
from server.store.database import Store, refused_on_conflict
from server.store.schema.core import items
from server.store.schema.master import item_categories

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def category(code: str) -> dict[str, object]:
    return {"code": code, "name": code.title(), "created_at": NOW, "updated_at": NOW}


async def categories(store: Store) -> list[str]:
    async with store.read("reading categories") as conn:
        found = await conn.execute(sa.select(item_categories.c.code).order_by("code"))
        return list(found.scalars())


async def test_a_duplicate_key_is_a_conflict_naming_what_was_written(store: Store) -> None:
    async with store.begin("creating a category") as conn:
        await conn.execute(item_categories.insert().values(category("bev")))

    async def create_food_and_bev_again() -> None:
        async with store.begin("creating categories") as conn:
            await conn.execute(item_categories.insert().values(category("food")))
            async with refused_on_conflict("item category 'bev'"):
                await conn.execute(item_categories.insert().values(category("bev")))

    with pytest.raises(Conflict) as raised:
        await create_food_and_bev_again()
    assert raised.value.reason.startswith("item category 'bev' conflicts with existing data (")
    assert raised.value.__cause__ is not None
    # The refusal left the transaction: what it wrote before is rolled back too.
    assert await categories(store) == ["bev"]


async def test_a_broken_foreign_key_raises_the_refusal_given(store: Store) -> None:
    refusal = Conflict("item 'A-1' names a category that went away")

    async def create_item() -> None:
        async with store.begin("creating an item") as conn, refused_on_conflict(refusal):
            await conn.execute(
                items.insert().values(
                    sku="A-1", name="A", category="gone", created_at=NOW, updated_at=NOW
                )
            )

    with pytest.raises(Conflict) as raised:
        await create_item()
    assert raised.value is refusal


async def test_the_refusal_may_be_of_another_kind(store: Store) -> None:
    async with store.begin("creating a category") as conn:
        await conn.execute(item_categories.insert().values(category("bev")))
    rejected = ImportRejected([RowError(None, None, "another change came in meanwhile")])
    with pytest.raises(ImportRejected) as raised:
        async with store.begin("importing") as conn, refused_on_conflict(rejected):
            await conn.execute(item_categories.insert().values(category("bev")))
    assert raised.value.errors == rejected.errors


async def test_a_violation_outside_it_stays_a_store_error(store: Store) -> None:
    async with store.begin("creating a category") as conn:
        await conn.execute(item_categories.insert().values(category("bev")))
    with pytest.raises(StoreError, match="while creating it again"):
        async with store.begin("creating it again") as conn:
            await conn.execute(item_categories.insert().values(category("bev")))
