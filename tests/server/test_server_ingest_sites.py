"""A group holding batches of two sites: on PostgreSQL each site commits in a transaction
of its own, so a transaction holding one site's balance rows (another instance applying
that site's batches) does not hold up the other site's batches."""

from __future__ import annotations

import asyncio

from server_helpers import GTIN_A, Batches, Probe, balance_rows_held, checked, sgtin

from server.ingest.consumer import Ingestor
from server.ingest.intake import Prepared
from server.store.database import Store

LOOKS = 600


async def _prepared(ingestor: Ingestor, batches: Batches, epc: str) -> Prepared:
    return await checked(
        ingestor, batches, [batches.event(epc=epc, read_point=f"{batches.site}.dock.1")]
    )


async def _receipts_at(probe: Probe, location: str) -> int:
    return sum(1 for row in await probe.ledger() if row["to_location"] == location)


async def test_one_sites_locked_balances_do_not_hold_up_another_sites_batches(
    store: Store, ingestor: Ingestor, probe: Probe
) -> None:
    wh1, wh2 = Batches(), Batches(site="wh2", gateway="gw2")
    await ingestor.handle(
        wh2.topic, wh2.payload([wh2.event(epc=sgtin(1), read_point="wh2.dock.1")])
    )
    group = [await _prepared(ingestor, wh1, sgtin(2)), await _prepared(ingestor, wh2, sgtin(3))]
    if store.dialect != "postgresql":
        # SQLite: one writer, one transaction for the group.
        results = await ingestor.apply(group)
        assert [result.applied for result in results] == [1, 1]
        return

    # Another transaction holds wh2's balance row, as an instance applying wh2 would.
    async with balance_rows_held(store, "wh2.receiving"):
        applying = asyncio.create_task(ingestor.apply(group))
        for _ in range(LOOKS):
            if await _receipts_at(probe, "wh1.receiving") == 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("wh1's batch waited for wh2's balance row")
        assert not applying.done()  # wh2's batch waits for the row, as it must
    results = await applying
    assert [(result.outcome, result.applied, result.acked) for result in results] == [
        ("applied", 1, True),
        ("applied", 1, True),
    ]
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 1, (GTIN_A, "wh2.receiving"): 2}
