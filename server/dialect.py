"""The one place that knows SQLite and PostgreSQL spell upserts with different classes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

Upsert = sqlite.Insert | postgresql.Insert


def upsert(conn: AsyncConnection, table: sa.Table) -> Upsert:
    """An INSERT that supports ``ON CONFLICT`` on the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def bytewise(conn: AsyncConnection, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``column`` compared by code point, as Python compares strings.

    SQLite's default collation is bytewise already; PostgreSQL's depends on the database
    locale, so ties between event ids would break differently from the rules' order.
    """
    if conn.dialect.name == "postgresql":
        return column.collate("C")
    return column
