"""Checking that the balances agree with the ledger they are derived from."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.schema import balances, items, ledger
from server.store import Store


def _differences() -> sa.Select[Any]:
    # One statement, so it reads one snapshot even while ingest keeps writing.
    deltas = sa.union_all(
        sa.select(
            ledger.c.item_id,
            ledger.c.to_location.label("location"),
            ledger.c.quantity.label("ledger"),
            sa.literal(0).label("balance"),
        ).where(ledger.c.to_location.is_not(None)),
        sa.select(
            ledger.c.item_id,
            ledger.c.from_location,
            -ledger.c.quantity,
            sa.literal(0),
        ).where(ledger.c.from_location.is_not(None)),
        sa.select(balances.c.item_id, balances.c.location_id, sa.literal(0), balances.c.on_hand),
    ).subquery("deltas")
    ledger_sum = sa.func.sum(deltas.c.ledger)
    balance_sum = sa.func.sum(deltas.c.balance)
    return (
        sa.select(deltas.c.item_id, deltas.c.location, ledger_sum, balance_sum)
        .group_by(deltas.c.item_id, deltas.c.location)
        .having(ledger_sum != balance_sum)
        .order_by(deltas.c.item_id, deltas.c.location)
    )


async def check_ledger(store: Store) -> list[str]:
    """Rebuild on-hand figures from the ledger and compare them with ``balances``.

    Returns:
        One line per item and location where they disagree; empty when all agree.

    Raises:
        StoreError: the database failed.
    """
    async with store.read("checking balances against the ledger") as conn:
        rows = (await conn.execute(_differences())).all()
        if not rows:
            return []
        item_ids = sorted({row[0] for row in rows})
        names = {
            row.id: row.sku
            for row in await conn.execute(
                sa.select(items.c.id, items.c.sku).where(items.c.id.in_(item_ids))
            )
        }
    return [
        f"item {names.get(row[0], row[0])} at {row[1]}: balance {int(row[3])}, "
        f"ledger says {int(row[2])}"
        for row in rows
    ]
