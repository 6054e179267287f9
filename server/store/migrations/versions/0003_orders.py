"""Orders and unit sites: purchase, sales and transfer orders, their lines and stock figures.

Revision ID: 0003
Revises: 0001
Branch label: orders
Create Date: 2024-11-26

New tables ``orders``, ``order_lines`` and ``order_positions``; a new nullable column
``units.site`` (the site of a unit's newest event, for the impossible-movement check).
Written out in full, not imported from ``server.store.schema.orders``: a revision is frozen in
time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("orders",)
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
    op.add_column("units", sa.Column("site", sa.String(64), nullable=True))
    op.create_table(
        "orders",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("location", _location(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("destination", _location(), nullable=True),
        sa.Column("destination_site", sa.String(64), nullable=True),
        sa.Column("partner", sa.String(256), nullable=True),
        sa.Column("expected_at", _time(), nullable=True),
        sa.Column("note", sa.String(2000), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("closed_at", _time(), nullable=True),
        sa.Column("last_line_no", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.ForeignKeyConstraint(["location"], ["locations.id"], name="fk_orders_location"),
        sa.ForeignKeyConstraint(["destination"], ["locations.id"], name="fk_orders_destination"),
        sa.UniqueConstraint("kind", "number", name="uq_orders_kind_number"),
        sa.CheckConstraint(
            "kind IN ('purchase', 'sales', 'transfer')", name="ck_orders_kind_known"
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'open', 'closed', 'cancelled')", name="ck_orders_status_known"
        ),
    )
    op.create_index("ix_orders_kind_status", "orders", ["kind", "status", "id"])
    op.create_index(
        "ix_orders_status_site", "orders", ["status", "kind", "site", "destination_site"]
    )
    op.create_table(
        "order_lines",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("order_id", _id(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("shipped", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_lines"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_order_lines_order_id"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_order_lines_item_id"),
        sa.UniqueConstraint("order_id", "line_no", name="uq_order_lines_order_line"),
        sa.CheckConstraint("quantity > 0", name="ck_order_lines_quantity_positive"),
        sa.CheckConstraint(
            "received >= 0 AND shipped >= 0", name="ck_order_lines_counters_not_negative"
        ),
    )
    op.create_index("ix_order_lines_item", "order_lines", ["item_id", "order_id"])
    op.create_table(
        "order_positions",
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("location_id", _location(), nullable=False),
        sa.Column("on_order", sa.BigInteger(), nullable=False),
        sa.Column("allocated", sa.BigInteger(), nullable=False),
        sa.Column("in_transit", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", "location_id", name="pk_order_positions"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_order_positions_item_id"),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name="fk_order_positions_location_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("order_positions")
    op.drop_table("order_lines")
    op.drop_table("orders")
    # SQLite: batch mode rebuilds the table without the column.
    with op.batch_alter_table("units") as batch:
        batch.drop_column("site")
