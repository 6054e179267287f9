"""Initial schema: ledger, balances, units, master data, exactly-once ids, alerts, gateways.

Revision ID: 0001
Revises:
Create Date: 2024-11-25

Written out in full rather than imported from ``server.store.schema.core``: a revision is frozen
in time and must keep creating the same tables after the code moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCATION_LENGTH = 128


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _location() -> sa.types.TypeEngine[str]:
    return sa.String(LOCATION_LENGTH).with_variant(
        sa.String(LOCATION_LENGTH, collation="C"), "postgresql"
    )


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("gtin", sa.String(14), nullable=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("reviewed", sa.Boolean(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_items"),
        sa.UniqueConstraint("sku", name="uq_items_sku"),
        sa.UniqueConstraint("gtin", name="uq_items_gtin"),
    )
    op.create_table(
        "locations",
        sa.Column("id", _location(), nullable=False),
        sa.Column("parent", _location(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_locations"),
        sa.ForeignKeyConstraint(["parent"], ["locations.id"], name="fk_locations_parent"),
    )
    op.create_table(
        "ledger",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(256), nullable=True),
        sa.Column("event_time", _time(), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("epc", sa.String(200), nullable=True),
        sa.Column("from_location", _location(), nullable=True),
        sa.Column("to_location", _location(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(256), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("read_point", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ledger"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_ledger_item_id"),
        sa.ForeignKeyConstraint(
            ["from_location"], ["locations.id"], name="fk_ledger_from_location"
        ),
        sa.ForeignKeyConstraint(["to_location"], ["locations.id"], name="fk_ledger_to_location"),
        sa.CheckConstraint("quantity > 0", name="ck_ledger_quantity_positive"),
        sa.CheckConstraint(
            "from_location IS NOT NULL OR to_location IS NOT NULL", name="ck_ledger_has_location"
        ),
        sa.CheckConstraint(
            "kind IN ('receipt', 'shipment', 'transfer', 'count_adjustment', 'loss')",
            name="ck_ledger_kind_known",
        ),
    )
    op.create_index("ix_ledger_time", "ledger", ["event_time", "id"])
    op.create_index("ix_ledger_epc", "ledger", ["epc", "event_time", "id"])
    op.create_index("ix_ledger_item", "ledger", ["item_id", "event_time", "id"])
    op.create_index("ix_ledger_from", "ledger", ["from_location", "event_time", "id"])
    op.create_index("ix_ledger_to", "ledger", ["to_location", "event_time", "id"])
    op.create_index("ix_ledger_event_id", "ledger", ["event_id"])
    op.create_table(
        "balances",
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("location_id", _location(), nullable=False),
        sa.Column("on_hand", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", "location_id", name="pk_balances"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_balances_item_id"),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name="fk_balances_location_id"),
    )
    op.create_index("ix_balances_location", "balances", ["location_id"])
    op.create_table(
        "units",
        sa.Column("epc", sa.String(200), nullable=False),
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("location_id", _location(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_event_time", _time(), nullable=False),
        sa.Column("last_event_id", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("epc", name="pk_units"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_units_item_id"),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name="fk_units_location_id"),
        sa.CheckConstraint(
            "status IN ('in_stock', 'in_transit', 'shipped', 'missing')",
            name="ck_units_status_known",
        ),
    )
    op.create_index("ix_units_item", "units", ["item_id"])
    op.create_index("ix_units_location", "units", ["location_id"])
    op.create_table(
        "seen_events",
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("seen_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_seen_events"),
    )
    op.create_table(
        "batches",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(256), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("seq_first", sa.BigInteger(), nullable=False),
        sa.Column("seq_last", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("dead_letters", sa.Integer(), nullable=False),
        sa.Column("received_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
    )
    op.create_index("ix_batches_gateway", "batches", ["gateway", "received_at"])
    op.create_table(
        "dead_letters",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("gateway", sa.String(64), nullable=True),
        sa.Column("event_id", sa.String(256), nullable=True),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_bytes", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_received", "dead_letters", ["received_at", "id"])
    op.create_table(
        "alerts",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("message", sa.String(2000), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("opened_at", _time(), nullable=False),
        sa.Column("acknowledged_at", _time(), nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("closed_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')", name="ck_alerts_severity_known"
        ),
    )
    op.create_index(
        "uq_alerts_open",
        "alerts",
        ["kind", "subject"],
        unique=True,
        sqlite_where=sa.text("closed_at IS NULL"),
        postgresql_where=sa.text("closed_at IS NULL"),
    )
    op.create_index("ix_alerts_opened", "alerts", ["opened_at", "id"])
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("status_at", _time(), nullable=False),
        sa.Column("last_seen", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gateways"),
    )


def downgrade() -> None:
    for table in (
        "gateways",
        "alerts",
        "dead_letters",
        "batches",
        "seen_events",
        "units",
        "balances",
        "ledger",
        "locations",
        "items",
    ):
        op.drop_table(table)
