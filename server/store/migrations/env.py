"""Alembic environment for the server's schema.

Two ways in:

- From the server (``Store.migrate``): the caller passes a synchronous connection (the
  ``run_sync`` facade of an async one) in ``config.attributes["connection"]`` and owns the
  transaction.
- From the ``alembic`` command line: the URL comes from ``STOCKGATE_DATABASE__URL`` (or
  ``sqlalchemy.url`` in the ini file) and an async engine is made here.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from server.store.schema.core import compared, metadata

DEFAULT_URL = "sqlite+aiosqlite:///stockgate.db"


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables for later revisions.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=compared(connection.dialect.name),
    )


def _run_with(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    return (
        os.environ.get("STOCKGATE_DATABASE__URL")
        or context.config.get_main_option("sqlalchemy.url")
        or DEFAULT_URL
    )


async def _run_online_from_url() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_with)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run_with(connection)
    elif context.is_offline_mode():
        _run_offline()
    else:
        asyncio.run(_run_online_from_url())


_main()
