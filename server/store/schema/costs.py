"""Unit costs and the master-data audit trail (revision 0014).

Costs never touch the ledger: quantities stay what the ledger says, and the value of stock
is computed from the ledger and these tables (``server.reports.valuation``). Both cost tables are
append-only histories, so every cost ever in force keeps its actor and time:

- ``item_costs``: an item's standard cost from ``effective_from`` on, for one site or (site
  NULL) for every site. The cost in force at a moment is the newest row effective at or
  before it, a site's own row before an all-sites row.
- ``receipt_costs``: the unit cost of one ledger row that brought stock into a site (an
  invoice or purchase order price recorded against the receipt). The newest row of a
  ledger row wins; the older ones stay as its history.
- ``masterdata_changes``: one row per change of master data (items, categories,
  locations, read points, costs, reorder settings): what (``entity``, ``key``), how
  (``action``), the values before and after, who (``actor``) and when (``changed_at``).

Money is kept as whole millionths (``Money``): exact on both databases, no floating point
and no driver-specific decimal handling.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from server.store.schema.core import UtcDateTime, big_id, ledger, metadata

COST_SCALE: Final = Decimal("0.000001")
"""Costs are kept to a millionth of the currency unit."""
MAX_UNIT_COST: Final = Decimal("1000000000")
MAX_SITE: Final = 64
MAX_ACTOR: Final = 128
MAX_COST_NOTE: Final = 1000
MAX_ENTITY: Final = 32
MAX_KEY: Final = 256

Entity = Literal["item", "category", "location", "read_point", "cost", "reorder_settings"]
ENTITIES: Final[tuple[Entity, ...]] = (
    "item",
    "category",
    "location",
    "read_point",
    "cost",
    "reorder_settings",
)
Action = Literal["create", "update", "delete"]
ACTIONS: Final[tuple[Action, ...]] = ("create", "update", "delete")


class Money(sa.types.TypeDecorator[Decimal]):
    """A non-negative amount kept as whole millionths in a 64-bit integer."""

    impl = sa.BigInteger()
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value.quantize(COST_SCALE).scaleb(6))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-6)


item_costs = sa.Table(
    "item_costs",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("item_id", big_id(), sa.ForeignKey("items.id"), nullable=False),
    sa.Column("site", sa.String(MAX_SITE), nullable=True),
    sa.Column("unit_cost", Money(), nullable=False),
    sa.Column("effective_from", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(MAX_ACTOR), nullable=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.Column("note", sa.String(MAX_COST_NOTE), nullable=True),
    sa.CheckConstraint("unit_cost >= 0", name="unit_cost_not_negative"),
    sa.Index("ix_item_costs_item", "item_id", "effective_from", "id"),
)

receipt_costs = sa.Table(
    "receipt_costs",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("ledger_id", big_id(), sa.ForeignKey(ledger.c.id), nullable=False),
    sa.Column("unit_cost", Money(), nullable=False),
    sa.Column("actor", sa.String(MAX_ACTOR), nullable=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.Column("note", sa.String(MAX_COST_NOTE), nullable=True),
    sa.CheckConstraint("unit_cost >= 0", name="unit_cost_not_negative"),
    sa.Index("ix_receipt_costs_ledger", "ledger_id", "id"),
)

masterdata_changes = sa.Table(
    "masterdata_changes",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(MAX_ENTITY), nullable=False),
    sa.Column("key", sa.String(MAX_KEY), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("before", sa.JSON(), nullable=True),
    sa.Column("after", sa.JSON(), nullable=True),
    sa.Column("actor", sa.String(MAX_ACTOR), nullable=False),
    sa.Column("changed_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("action IN ('create', 'update', 'delete')", name="action_known"),
    sa.Index("ix_masterdata_changes_entity", "entity", "key", "id"),
    sa.Index("ix_masterdata_changes_time", "changed_at", "id"),
)
