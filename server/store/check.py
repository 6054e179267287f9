"""Checking that the balances agree with the ledger they are derived from.

Every ledger row counts the same way whatever its kind (receipts, shipments, transfers,
losses, count adjustments from ingest or the API, and reversals): ``quantity`` leaves
``from_location`` and arrives at ``to_location``. Reversals are also checked to mirror the
row they cancel (same item, unit, kind and quantity, locations swapped, and not a reversal
themselves), since that is what makes a reversal cancel exactly. And every item and
location the ledger, the balances and the units name must exist: on PostgreSQL the
writers hold those references, not foreign keys (``server.ingest.references``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.store.database import Store
from server.store.schema.core import balances, items, ledger, locations, units

UNITS_LISTED = 100
"""Units naming a missing item or location listed at most (then a count)."""


def _missing_item(item_id: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    return ~sa.exists().where(items.c.id == item_id)


def _missing_location(location: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    return sa.and_(location.is_not(None), ~sa.exists().where(locations.c.id == location))


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
    # Whether the item and the location exist, looked up once per (item, location).
    no_item = _missing_item(deltas.c.item_id)
    no_location = _missing_location(deltas.c.location)
    return (
        sa.select(
            deltas.c.item_id,
            deltas.c.location,
            ledger_sum,
            balance_sum,
            no_item.label("no_item"),
            no_location.label("no_location"),
        )
        .group_by(deltas.c.item_id, deltas.c.location)
        .having(sa.or_(ledger_sum != balance_sum, no_item, no_location))
        .order_by(deltas.c.item_id, deltas.c.location)
    )


def _dangling_units() -> sa.Select[Any]:
    return (
        sa.select(units.c.epc, units.c.item_id, units.c.location_id)
        .where(sa.or_(_missing_item(units.c.item_id), _missing_location(units.c.location_id)))
        .order_by(units.c.epc)
        .limit(UNITS_LISTED + 1)
    )


def _bad_reversals() -> sa.Select[Any]:
    reversal = ledger.alias("reversal")
    original = ledger.alias("original")
    mirrors = sa.and_(
        original.c.reverses.is_(None),
        reversal.c.item_id == original.c.item_id,
        reversal.c.quantity == original.c.quantity,
        reversal.c.kind == original.c.kind,
        reversal.c.epc.is_not_distinct_from(original.c.epc),
        reversal.c.from_location.is_not_distinct_from(original.c.to_location),
        reversal.c.to_location.is_not_distinct_from(original.c.from_location),
    )
    return (
        sa.select(reversal.c.id, original.c.id.label("original"))
        .join(original, original.c.id == reversal.c.reverses)
        .where(~mirrors)
        .order_by(reversal.c.id)
    )


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """What ``check-ledger`` found: one line per problem, by kind."""

    balances: list[str]
    """Item and location where the balance is not what the ledger sums to."""
    reversals: list[str]
    """Reversals that do not mirror the row they cancel."""
    references: list[str]
    """Ledger rows, balances and units that name an item or location that is not there."""

    @property
    def lines(self) -> list[str]:
        return [*self.balances, *self.reversals, *self.references]


async def ledger_report(store: Store) -> LedgerReport:
    """Rebuild on-hand figures from the ledger, compare them with ``balances``, and check
    that every reversal mirrors its original.

    Raises:
        StoreError: the database failed.
    """
    async with store.read("checking balances against the ledger") as conn:
        rows = (await conn.execute(_differences())).all()
        reversals = [
            f"movement {row.id} reverses movement {row.original} but does not mirror it "
            "(same item, unit, kind and quantity with the locations swapped, and not a reversal)"
            for row in await conn.execute(_bad_reversals())
        ]
        dangling = (await conn.execute(_dangling_units())).all()
        item_ids = sorted({row[0] for row in rows})
        names = {
            row.id: row.sku
            for row in await conn.execute(
                sa.select(items.c.id, items.c.sku).where(items.c.id.in_(item_ids))
            )
        }
    balances = [
        f"item {names.get(row[0], row[0])} at {row[1]}: balance {int(row[3])}, "
        f"ledger says {int(row[2])}"
        for row in rows
        if row[2] != row[3]
    ]
    references = [
        f"ledger rows or the balance of item id {row[0]} at {row[1]} name "
        + " and ".join(
            what
            for what, missing in (("an item", row.no_item), ("a location", row.no_location))
            if missing
        )
        + " that does not exist"
        for row in rows
        if row.no_item or row.no_location
    ]
    references += [
        f"unit {epc} names item id {item_id} at {location}, one of which does not exist"
        for epc, item_id, location in dangling[:UNITS_LISTED]
    ]
    if len(dangling) > UNITS_LISTED:
        references.append(f"(units past the first {UNITS_LISTED} not listed)")
    return LedgerReport(balances, reversals, references)


async def check_ledger(store: Store) -> list[str]:
    """Rebuild on-hand figures from the ledger and compare them with ``balances``.

    Returns:
        One line per item and location where they disagree, then one per reversal that
        does not mirror its original; empty when all agree.

    Raises:
        StoreError: the database failed.
    """
    return (await ledger_report(store)).lines
