"""Rows into models: a page of a list ordered by a text key, and the check that nothing
refers to a row before it is deleted (the commands' CRUD functions share both)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import Conflict

View = TypeVar("View", bound=BaseModel)


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
