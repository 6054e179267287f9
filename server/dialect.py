"""The one place that knows SQLite and PostgreSQL spell upserts with different classes."""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class _Prepared:
    sql: str
    names: tuple[str, ...]
    """Parameter names in placeholder order."""
    processors: tuple[Callable[[Any], Any] | None, ...]
    """SQLAlchemy's own bind processor of each parameter (None: passed as is)."""


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
        processors = tuple(
            compiled.binds[bind].type.dialect_impl(dialect).bind_processor(dialect)
            for bind in names
        )
        prepared = _Prepared(compiled.string, names, processors)
        _prepared[cache_key] = prepared
    pairs = tuple(zip(prepared.names, prepared.processors, strict=True))
    params = [tuple(row[n] if p is None else p(row[n]) for n, p in pairs) for row in rows]
    await conn.exec_driver_sql(prepared.sql, params)
