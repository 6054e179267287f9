"""Rows into models: the first row of a query, the rows of many keys, a page of a list
ordered by a text key, and the check that nothing refers to a row before it is deleted
(the commands' CRUD functions and the CSV import share them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import Conflict
from server.store.dialect import in_chunks

View = TypeVar("View", bound=BaseModel)


async def first_view(conn: AsyncConnection, query: sa.Select[Any], view: type[View]) -> View | None:
    """The first row of ``query`` as ``view``, or None when there is none."""
    row = (await conn.execute(query)).first()
    return view.model_validate(row._mapping) if row is not None else None


async def rows_with_keys(
    conn: AsyncConnection, query: sa.Select[Any], key: sa.ColumnElement[str], keys: Iterable[str]
) -> list[sa.Row[Any]]:
    """The rows of ``query`` whose ``key`` is one of ``keys``, however many (``IN_CHUNK`` keys
    a statement), in no particular order."""
    found: list[sa.Row[Any]] = []
    for chunk in in_chunks(sorted(set(keys))):
        found.extend(await conn.execute(query.where(key.in_(chunk))))
    return found


async def keyset_page(
    conn: AsyncConnection,
    query: sa.Select[Any],
    key: sa.ColumnElement[str],
    view: type[View],
    after: str | None,
    limit: int,
) -> tuple[list[View], bool]:
    """The rows of ``query`` by ``key`` after ``after`` (exclusive), at most ``limit`` of
    them as ``view``, and whether more follow (the API's cursor is the last key)."""
    if after is not None:
        query = query.where(key > after)
    rows = await conn.execute(query.order_by(key).limit(limit + 1))
    found = [view.model_validate(row._mapping) for row in rows]
    return found[:limit], len(found) > limit


async def refuse_while_referenced(
    conn: AsyncConnection, references: Sequence[tuple[str, sa.Select[Any]]]
) -> None:
    """Refuse a deletion while something refers to the row.

    Args:
        references: the reason to give and a query for the rows that refer, each; checked
            in order, so the first reason whose query finds a row is the one given.

    Raises:
        Conflict: a query found a row.
    """
    for reason, query in references:
        if await conn.scalar(query.limit(1)) is not None:
            raise Conflict(reason)
