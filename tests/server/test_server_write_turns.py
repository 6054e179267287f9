"""Ingest's writers side by side (``server.ingest.write_turns``): transactions that touch
what another earlier one reads wait for it, in the order they were planned; the others run
at once (on PostgreSQL; SQLite has one writer). The turns themselves, then the writers on
both databases: a unit received by one group and shipped by the next, both planned before
either is written, comes out as if one writer had written them in turn."""

from __future__ import annotations

import asyncio

import pytest
from server_helpers import GTIN_A, Batches, Probe, balance_rows_held, checked, sgtin

from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.planning import plan_ahead
from server.ingest.transactions import Ahead
from server.ingest.write_turns import EVERYTHING, Keys, WriteTurns, conflict_keys
from server.rules.policy import Policy
from server.store.database import Store

LOOKS = 600


class _Log:
    """What the bodies of the turns did, in order."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.release = {name: asyncio.Event() for name in "abcd"}

    async def body(self, turns: WriteTurns, name: str, keys: Keys) -> None:
        async with turns.take(keys):
            self.steps.append(f"{name} in")
            await self.release[name].wait()
            self.steps.append(f"{name} out")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_turns_that_share_nothing_run_at_once_and_those_that_meet_wait_in_order() -> None:
    turns, log = WriteTurns(), _Log()
    tasks = [
        asyncio.create_task(log.body(turns, "a", frozenset({"unit-1"}))),
        asyncio.create_task(log.body(turns, "b", frozenset({"unit-1", "unit-2"}))),
        asyncio.create_task(log.body(turns, "c", frozenset({"unit-3"}))),
    ]
    await _settle()
    # b meets a (unit-1) and waits; c meets neither and runs beside a.
    assert log.steps == ["a in", "c in"]
    log.release["b"].set()
    log.release["c"].set()
    await _settle()
    assert log.steps == ["a in", "c in", "c out"]
    log.release["a"].set()
    await asyncio.gather(*tasks)
    assert log.steps == ["a in", "c in", "c out", "a out", "b in", "b out"]
    assert turns.running == 0


async def test_a_turn_over_everything_waits_for_all_before_it_and_holds_up_all_after() -> None:
    turns, log = WriteTurns(), _Log()
    tasks = [
        asyncio.create_task(log.body(turns, "a", frozenset({"unit-1"}))),
        asyncio.create_task(log.body(turns, "b", EVERYTHING)),
        asyncio.create_task(log.body(turns, "c", frozenset({"unit-9"}))),
    ]
    await _settle()
    assert log.steps == ["a in"]
    log.release["c"].set()
    log.release["a"].set()
    await _settle()
    assert log.steps == ["a in", "a out", "b in"]
    log.release["b"].set()
    await asyncio.gather(*tasks)
    assert log.steps == ["a in", "a out", "b in", "b out", "c in", "c out"]


async def test_a_turn_cancelled_while_waiting_holds_up_nobody() -> None:
    turns, log = WriteTurns(), _Log()
    first = asyncio.create_task(log.body(turns, "a", frozenset({"unit-1"})))
    waiting = asyncio.create_task(log.body(turns, "b", frozenset({"unit-1"})))
    await _settle()
    waiting.cancel()
    await _settle()
    assert turns.running == 1
    later = asyncio.create_task(log.body(turns, "c", frozenset({"unit-1"})))
    log.release["a"].set()
    log.release["c"].set()
    await asyncio.gather(first, later)
    assert log.steps == ["a in", "a out", "c in", "c out"]


async def test_the_keys_of_a_plan_are_its_units_new_items_and_new_locations(
    store: Store, settings: ServerSettings, ingestor: Ingestor, batches: Batches
) -> None:
    group = await checked(ingestor, batches, [batches.event(epc=sgtin(n)) for n in (1, 2)])
    async with store.read("planning") as conn:
        planned = await plan_ahead(conn, group.events, settings.read_point_table())
    assert planned is not None
    keys = conflict_keys([planned], Policy(), known_locations=set())
    assert keys == frozenset(
        {
            ("unit", sgtin(1)),
            ("unit", sgtin(2)),
            ("item", GTIN_A),
            ("location", "wh1.receiving"),
        }
    )
    known = conflict_keys([planned], Policy(), known_locations={"wh1.receiving"})
    assert known is not None
    assert ("location", "wh1.receiving") not in known
    refusing = conflict_keys([planned], Policy(negative_stock="refuse"), {"wh1.receiving"})
    assert refusing is not None
    assert ("balance", GTIN_A, "wh1.receiving") in refusing
    assert conflict_keys([planned, None], Policy(), set()) is EVERYTHING


async def test_a_shipment_planned_with_its_receipt_waits_for_it_and_ships_from_stock(
    store: Store, ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    # The item exists, so the receipt creates nothing the shipment's plan would create too.
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(9))]))
    receipt = [await checked(ingestor, batches, [batches.event(epc=sgtin(1))])]
    shipment = [await checked(ingestor, batches, [batches.event(epc=sgtin(1), direction="out")])]
    # Both planned before either is written: the shipment's plan read no unit.
    first, second = await ingestor.plan(receipt), await ingestor.plan(shipment)
    assert isinstance(first, Ahead)
    assert isinstance(second, Ahead)

    if store.dialect == "postgresql":
        # Holds the receipt's transaction at its balance row, before its commit.
        async with balance_rows_held(store, "wh1.receiving"):
            writing = asyncio.create_task(ingestor.apply(receipt, first))
            shipping = asyncio.create_task(ingestor.apply(shipment, second))
            await asyncio.sleep(0.5)
            assert not writing.done()
            assert not shipping.done()
            assert len(await probe.ledger()) == 1  # the shipment waits for its receipt
    else:
        writing = asyncio.create_task(ingestor.apply(receipt, first))
        shipping = asyncio.create_task(ingestor.apply(shipment, second))
    [received], [shipped] = await writing, await shipping

    assert (received.applied, shipped.applied) == (1, 1)
    assert not [row for row in await probe.alerts() if row["kind"] == "unit_not_in_stock"]
    assert [(row["kind"], row["epc"]) for row in await probe.ledger()] == [
        ("receipt", sgtin(9)),
        ("receipt", sgtin(1)),
        ("shipment", sgtin(1)),
    ]
    assert (await probe.units())[sgtin(1)]["status"] == "shipped"
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 1}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_groups_that_share_nothing_commit_while_another_is_held_up(
    store: Store, ingestor: Ingestor, probe: Probe
) -> None:
    wh1, wh2 = Batches(), Batches(site="wh2", gateway="gw2")
    # Items and locations exist: the two groups below share no key.
    await ingestor.handle(wh1.topic, wh1.payload([wh1.event(epc=sgtin(51))]))
    await ingestor.handle(
        wh2.topic, wh2.payload([wh2.event(epc=sgtin(52), read_point="wh2.dock.1")])
    )
    held = [await checked(ingestor, wh1, [wh1.event(epc=sgtin(1))])]
    free = [await checked(ingestor, wh2, [wh2.event(epc=sgtin(2), read_point="wh2.dock.1")])]
    held_plan, free_plan = await ingestor.plan(held), await ingestor.plan(free)

    async with balance_rows_held(store, "wh1.receiving"):
        writing = asyncio.create_task(ingestor.apply(held, held_plan))
        committed = asyncio.create_task(ingestor.apply(free, free_plan))
        for _ in range(LOOKS):
            if committed.done():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("a group sharing nothing waited for the one held up")
        assert not writing.done()
    [result] = await writing
    assert result.applied == 1
    assert (await committed)[0].applied == 1
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 2, (GTIN_A, "wh2.receiving"): 2}
