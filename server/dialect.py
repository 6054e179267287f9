"""The one place that knows how SQLite and PostgreSQL differ: upserts, collation, list
parameters."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

Upsert = sqlite.Insert | postgresql.Insert


def upsert(conn: AsyncConnection, table: sa.Table) -> Upsert:
    """An INSERT that supports ``ON CONFLICT`` on the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def from_excluded(insert: Upsert, *columns: str) -> dict[str, Any]:
    """An upsert's ``SET``: each of ``columns`` takes the value the row was inserted with."""
    return {column: insert.excluded[column] for column in columns}


def bytewise(conn: AsyncConnection, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``column`` compared by code point, as Python compares strings.

    SQLite's default collation is bytewise already; PostgreSQL's depends on the database
    locale, so ties between event ids would break differently from the rules' order.
    """
    if conn.dialect.name == "postgresql":
        return column.collate("C")
    return column


def one_of(
    conn: AsyncConnection, column: sa.ColumnElement[str], name: str, values: Sequence[str]
) -> tuple[sa.ColumnElement[bool], dict[str, Any]]:
    """``column IN values`` with the whole list bound as one parameter, and that parameter.

    A list of hundreds of values (a batch's EPCs or event ids) would otherwise become as
    many parameters, each rendered and bound one by one in Python when the statement runs.
    PostgreSQL takes an array read by ``unnest``; SQLite a JSON array read by ``json_each``,
    whose values drive lookups in ``column``'s index (the query plan says ``LIST SUBQUERY``).
    Not ``= ANY(array)`` on PostgreSQL: asyncpg's prepared statements get a generic plan
    after five runs, where the array is a parameter, not a constant, so PostgreSQL cannot
    hash it and compares every row it scans with every element (2,000 EPCs against 16,000
    units: 71 ms a batch, growing with the table); ``IN (SELECT unnest(...))`` is a join
    the planner sizes (1-2 ms).
    """
    if conn.dialect.name == "postgresql":
        array = sa.bindparam(name, type_=postgresql.ARRAY(sa.String()))
        listed = sa.func.unnest(array).table_valued("value").render_derived()
        return column.in_(sa.select(listed.c.value)), {name: list(values)}
    listed = sa.func.json_each(sa.bindparam(name, type_=sa.String())).table_valued("value")
    return column.in_(sa.select(listed.c.value)), {name: json.dumps(list(values))}


@dataclass(frozen=True, slots=True)
class _Prepared:
    sql: str
    values: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    """A row's values in placeholder order."""
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]
    """SQLAlchemy's own bind processor of each placeholder that has one, by position."""


_prepared: dict[tuple[str, str, tuple[str, ...]], _Prepared] = {}


async def execute_many(
    conn: AsyncConnection,
    name: str,
    statement: Callable[[AsyncConnection], sa.Insert],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Run one INSERT (or upsert) with no RETURNING once per row, as one driver executemany.

    The hot ingest writes (a ledger row and a unit state per event) cost more in
    SQLAlchemy's per-row parameter handling than in the database. Here ``statement`` is
    built and compiled once per ``name``, database and column set; each row becomes a
    tuple through the same bind processors SQLAlchemy would apply (so what is stored is
    identical), and the driver runs the prepared statement for all of them.

    Args:
        conn: a connection in a transaction.
        name: identifies what ``statement`` builds (the cache key, with the database).
        statement: builds the statement for a connection's database.
        rows: the values by column key; every row has the keys of the first.
    """
    if not rows:
        return
    dialect = conn.dialect
    keys = tuple(rows[0])
    cache_key = (name, dialect.name, keys)
    prepared = _prepared.get(cache_key)
    if prepared is None:
        compiled = statement(conn).compile(dialect=dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or ())
        if not names:
            raise ValueError(f"execute_many needs a positional paramstyle ({name})")
        processors = (
            compiled.binds[bind].type.dialect_impl(dialect).bind_processor(dialect)
            for bind in names
        )
        prepared = _Prepared(
            compiled.string,
            operator.itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],),
            tuple((i, p) for i, p in enumerate(processors) if p is not None),
        )
        _prepared[cache_key] = prepared
    # Column by column: the loops run in C, and only the columns with a processor call one.
    columns = list(zip(*map(prepared.values, rows), strict=True))
    for position, processor in prepared.processed:
        columns[position] = tuple(map(processor, columns[position]))
    await conn.exec_driver_sql(prepared.sql, list(zip(*columns, strict=True)))
