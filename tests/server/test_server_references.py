"""What ledger rows, units and balances name exists: foreign keys on SQLite, the writers'
locks on PostgreSQL (``server.ingest.references``, revision 0022)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.items import create_item, delete_item
from server.commands.locations import create_location, delete_location
from server.commands.masterdata import ItemFields, LocationFields
from server.errors import Conflict, StoreError
from server.ingest.ledger_writes import write_plan
from server.ingest.order_book import shift_positions
from server.rules.model import ItemKey, Movement, Plan, UnitState
from server.store.database import Store
from server.store.schema.core import HELD_BY_WRITERS, balances, items, ledger, units

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SKU = "CASE-1"
DOCK = "wh1.dock"
KEY = ItemKey(None, SKU, "a case")
KNOWN = {"wh1", DOCK, "wh1.yard", "wh1.gone"}
"""What the writer takes for existing locations: ``wh1.gone`` never was (a stale cache)."""


def receipt(location: str = DOCK) -> Plan:
    """A case received at ``location``: a ledger row, its unit's state and a balance."""
    plan = Plan(
        movements=[
            Movement(
                "gw:1:1",
                NOW,
                KEY,
                "urn:epc:id:sgtin:0614141.812345.1",
                None,
                location,
                1,
                "receipt",
                None,
            )
        ]
    )
    plan.units["urn:epc:id:sgtin:0614141.812345.1"] = UnitState(
        "urn:epc:id:sgtin:0614141.812345.1", SKU, location, "in_stock", NOW, "gw:1:1", "wh1"
    )
    return plan


async def _master(store: Store) -> int:
    async with store.begin("creating the master data") as conn:
        await create_location(conn, LocationFields(id="wh1"), NOW)
        await create_location(conn, LocationFields(id=DOCK), NOW)
        await create_location(conn, LocationFields(id="wh1.yard"), NOW)
        return (await create_item(conn, ItemFields(sku=SKU, name="a case"), NOW)).id


async def _write(conn: AsyncConnection, plan: Plan, item_id: int) -> None:
    await write_plan(conn, plan, {SKU: item_id}, known_locations=KNOWN, actor="t", now=NOW)


async def _count(store: Store, table: sa.Table) -> int:
    async with store.read("counting") as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_a_row_naming_an_item_or_location_that_is_not_there_is_refused(store: Store) -> None:
    item_id = await _master(store)
    for plan, item in ((receipt(), item_id + 1000), (receipt("wh1.gone"), item_id)):
        with pytest.raises(StoreError, match=r"(?i)foreign key|no such"):
            async with store.begin("writing") as conn:
                await _write(conn, plan, item)
    with pytest.raises(StoreError, match=r"(?i)foreign key|no such item"):
        async with store.begin("order positions") as conn:
            await shift_positions(conn, {(item_id + 1000, DOCK): {"on_order": 3}})
    assert [await _count(store, table) for table in (ledger, units, balances)] == [0, 0, 0]
    async with store.begin("writing") as conn:
        await _write(conn, receipt(), item_id)
    assert [await _count(store, table) for table in (ledger, units, balances)] == [1, 1, 1]


async def _waiting_on_a_lock(
    store: Store, conn: AsyncConnection, work: Coroutine[Any, Any, None]
) -> asyncio.Task[None]:
    """``work`` on ``conn``, in a transaction begun here, as a task that waits for a lock
    (PostgreSQL's view of the session, asked for at most 10 s)."""
    await conn.begin()
    pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
    task = asyncio.create_task(work)
    query = sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
    for _ in range(200):
        async with store.engine.connect() as other:
            if (await other.execute(query, {"pid": pid})).scalar() == "Lock":
                return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {pid} never waited for a lock")


@pytest.fixture
async def two(store: Store) -> AsyncIterator[tuple[AsyncConnection, AsyncConnection]]:
    async with store.engine.connect() as first, store.engine.connect() as second:
        yield first, second


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_holds_none_of_the_foreign_keys_its_writers_hold(store: Store) -> None:
    async with store.read("reading the schema") as conn:
        names = set(
            (
                await conn.execute(sa.text("SELECT conname FROM pg_constraint WHERE contype = 'f'"))
            ).scalars()
        )
    assert names, "the other foreign keys stay"
    assert not names & HELD_BY_WRITERS


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_deleting_an_item_waits_for_a_writer_holding_it_then_sees_its_rows(
    store: Store, two: tuple[AsyncConnection, AsyncConnection]
) -> None:
    item_id = await _master(store)
    writer, deleter = two
    await writer.begin()
    await _write(writer, receipt(), item_id)
    deleting = await _waiting_on_a_lock(store, deleter, delete_item(deleter, SKU))
    await writer.commit()
    with pytest.raises(Conflict, match="ledger rows"):
        await deleting
    await deleter.rollback()
    assert await _count(store, items) == 1
    assert await _count(store, ledger) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_writer_naming_a_location_deleted_meanwhile_is_refused(
    store: Store, two: tuple[AsyncConnection, AsyncConnection]
) -> None:
    item_id = await _master(store)
    writer, deleter = two
    await deleter.begin()
    await delete_location(deleter, "wh1.yard")
    writing = await _waiting_on_a_lock(store, writer, _write(writer, receipt("wh1.yard"), item_id))
    await deleter.commit()
    with pytest.raises(sa.exc.IntegrityError, match=r"no such location 'wh1\.yard'"):
        await writing
    await writer.rollback()
    assert [await _count(store, table) for table in (ledger, units, balances)] == [0, 0, 0]


def _later(plan: Plan, epc: str, location: str, at: datetime, event_id: str) -> Plan:
    """``plan`` with ``epc`` moved to ``location`` by ``event_id`` at ``at``."""
    plan.units[epc] = UnitState(epc, SKU, location, "in_stock", at, event_id, "wh1")
    return plan


async def _units(store: Store) -> dict[str, tuple[str | None, str]]:
    async with store.read("reading units") as conn:
        rows = await conn.execute(
            sa.select(units.c.epc, units.c.location_id, units.c.last_event_id)
        )
        return {epc: (location, event_id) for epc, location, event_id in rows}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_unit_states_upserted_by_copy_twice_in_a_transaction_keep_the_newest(
    store: Store,
) -> None:
    # On PostgreSQL unit states go through a staging table (``dialect.STAGED``); each upsert
    # must take its own rows only, and leave the table empty for the next.
    item_id = await _master(store)
    first, second = "urn:epc:id:sgtin:0614141.812345.1", "urn:epc:id:sgtin:0614141.812345.2"
    later = NOW.replace(hour=10)

    async def fail_after_staging() -> None:
        async with store.begin("a transaction that fails") as conn:
            await _write(conn, receipt(), item_id)
            await conn.execute(sa.text("SELECT 1/0"))

    with pytest.raises(StoreError):
        await fail_after_staging()
    async with store.begin("two groups") as conn:
        await _write(conn, receipt(), item_id)
        staged = sa.text("SELECT count(*) FROM stage_units")
        assert (await conn.execute(staged)).scalar_one() == 0
        plan = _later(Plan(), first, "wh1.yard", later, "gw:1:3")
        await _write(conn, _later(plan, second, DOCK, NOW, "gw:1:2"), item_id)
        # An older state of the first unit does not overwrite the newer one.
        await _write(conn, _later(Plan(), first, DOCK, NOW, "gw:1:0"), item_id)
        assert (await conn.execute(staged)).scalar_one() == 0
    assert await _units(store) == {first: ("wh1.yard", "gw:1:3"), second: (DOCK, "gw:1:2")}
