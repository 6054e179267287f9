"""check_ledger: balances rebuilt from the ledger agree, and a planted difference is found."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from server_helpers import GTIN_A, Batches, sgtin

from server.app import check_ledger_command
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.store.check import check_ledger
from server.store.database import Store
from server.store.schema import core as schema


@pytest.fixture
async def filled(ingestor: Ingestor, batches: Batches) -> None:
    events = [batches.event(epc=sgtin(n)) for n in range(1, 6)]
    events += [batches.event(epc=sgtin(n), direction="out") for n in (1, 2)]
    events.append(batches.event(gtin=GTIN_A, qty=4, read_point="wh1.dock.2"))
    await ingestor.handle(batches.topic, batches.payload(events))


async def test_balances_agree_after_ingest(store: Store, filled: None) -> None:
    assert await check_ledger(store) == []


async def test_a_planted_difference_is_reported(
    store: Store, filled: None, settings: ServerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.balances)
            .where(schema.balances.c.location_id == "wh1.receiving")
            .values(on_hand=schema.balances.c.on_hand + 5)
        )
        item_id = await conn.scalar(sa.select(schema.items.c.id))
        # A ledger row whose balance was never written.
        await conn.execute(
            schema.ledger.insert().values(
                event_time=datetime(2024, 1, 1, tzinfo=UTC),
                recorded_at=datetime(2024, 1, 1, tzinfo=UTC),
                item_id=item_id,
                to_location="wh1.receiving.overflow",
                quantity=2,
                kind="receipt",
                actor="test",
            )
        )

    assert await check_ledger(store) == [
        f"item {GTIN_A} at wh1.receiving: balance 8, ledger says 3",
        f"item {GTIN_A} at wh1.receiving.overflow: balance 4, ledger says 6",
    ]
    assert await check_ledger_command(settings) == 1
    assert "2 balance(s) disagree with the ledger" in capsys.readouterr().out
