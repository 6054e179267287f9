"""PostgreSQL timeouts: no statement, abandoned transaction or dead link holds the server.

Real PostgreSQL (finding 7 of issue 13). Each bound is set small and then met.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from server.config.settings import DatabaseSettings
from server.errors import StoreError
from server.store.database import Store


@pytest.fixture
def short(pg_url: str) -> DatabaseSettings:
    return DatabaseSettings(
        url=pg_url,
        statement_timeout_s=0.3,
        idle_in_transaction_timeout_s=0.3,
        command_timeout_s=1.0,
    )


async def test_a_long_statement_is_cancelled_and_the_store_goes_on(
    short: DatabaseSettings,
) -> None:
    store = Store.open(short)
    try:
        with pytest.raises(StoreError, match="statement timeout"):
            async with store.read("sleeping") as conn:
                await conn.execute(sa.text("SELECT pg_sleep(5)"))
        async with store.read("after") as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
    finally:
        await store.close()


async def test_an_idle_transaction_is_ended_by_the_server(short: DatabaseSettings) -> None:
    store = Store.open(short)

    async def hold_idle() -> None:
        async with store.begin("holding a transaction") as conn:
            await conn.execute(sa.text("SELECT 1"))
            await asyncio.sleep(1.5)  # idle inside the transaction past its bound
            await conn.execute(sa.text("SELECT 1"))

    try:
        with pytest.raises(StoreError):
            await hold_idle()
        async with store.read("after") as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
    finally:
        await store.close()


async def test_the_client_gives_up_on_a_statement_that_never_answers(pg_url: str) -> None:
    # The server's own timeout is off: only the client's clock can end this wait, as it
    # must when the peer of a half-open connection is gone.
    settings = DatabaseSettings(url=pg_url, statement_timeout_s=3600, command_timeout_s=0.5)
    store = Store.open(settings)
    try:
        with pytest.raises(StoreError):
            async with store.read("waiting") as conn:
                await conn.execute(sa.text("SELECT pg_sleep(30)"))
        async with store.read("after") as conn:
            assert await conn.scalar(sa.text("SHOW tcp_keepalives_idle")) == "30"
    finally:
        await store.close()
