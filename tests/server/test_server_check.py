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


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_rows_naming_what_does_not_exist_are_reported_on_postgresql(
    store: Store, filled: None, settings: ServerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    # PostgreSQL has no foreign keys on these columns (revision 0022): what a writer that
    # skipped ``server.ingest.references.hold`` could leave behind.
    at = datetime(2024, 1, 1, tzinfo=UTC)
    async with store.engine.begin() as conn:
        item_id = await conn.scalar(sa.select(schema.items.c.id))
        await conn.execute(
            schema.ledger.insert().values(
                event_time=at,
                recorded_at=at,
                item_id=item_id,
                to_location="wh9.gone",
                quantity=2,
                kind="receipt",
                actor="test",
            )
        )
        await conn.execute(
            schema.balances.insert().values(item_id=item_id, location_id="wh9.gone", on_hand=2)
        )
        await conn.execute(
            schema.units.update().where(schema.units.c.epc == sgtin(3)).values(item_id=999_999)
        )
    assert await check_ledger(store) == [
        f"ledger rows or the balance of item id {item_id} at wh9.gone name a location that "
        "does not exist",
        f"unit {sgtin(3)} names item id 999999 at wh1.receiving, one of which does not exist",
    ]
    assert await check_ledger_command(settings) == 1
    assert "rows name items or locations that do not exist" in capsys.readouterr().out
