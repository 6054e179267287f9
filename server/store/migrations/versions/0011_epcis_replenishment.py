"""Partner exchange and replenishment: EPCIS captures, advance shipping notices, plans.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-06

New tables ``epcis_captures``, ``epcis_seen_events``, ``asn_units``,
``replenishment_settings``, ``reorder_plans``, ``job_leases``; new nullable columns
``locations.sgln`` (a location's GS1 SGLN for EPCIS) and ``orders.placed_at`` (when an
order was opened: lead times start there; older open orders take their ``updated_at``).
Written out in full, not imported from ``server.store.schema.supply``: a revision is frozen in
time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("locations", sa.Column("sgln", sa.String(80), nullable=True))
    op.add_column("orders", sa.Column("placed_at", _time(), nullable=True))
    op.execute("UPDATE orders SET placed_at = updated_at WHERE status IN ('open', 'closed')")
    op.create_table(
        "epcis_captures",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_epcis_captures"),
        sa.UniqueConstraint("digest", name="uq_epcis_captures_digest"),
    )
    op.create_table(
        "epcis_seen_events",
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("capture_id", _id(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_epcis_seen_events"),
        sa.ForeignKeyConstraint(
            ["capture_id"], ["epcis_captures.id"], name="fk_epcis_seen_events_capture_id"
        ),
    )
    op.create_table(
        "asn_units",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("order_id", _id(), nullable=False),
        sa.Column("epc", sa.String(200), nullable=False),
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("shipped_at", _time(), nullable=False),
        sa.Column("capture_id", _id(), nullable=False),
        sa.Column("received_at", _time(), nullable=True),
        sa.Column("received_event_id", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_asn_units"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_asn_units_order_id"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_asn_units_item_id"),
        sa.ForeignKeyConstraint(
            ["capture_id"], ["epcis_captures.id"], name="fk_asn_units_capture_id"
        ),
        sa.UniqueConstraint("order_id", "epc", name="uq_asn_units_order_epc"),
    )
    op.create_index("ix_asn_units_epc", "asn_units", ["epc"])
    op.create_index("ix_asn_units_item", "asn_units", ["item_id", "order_id"])
    op.create_table(
        "replenishment_settings",
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("supplier", sa.String(256), nullable=True),
        sa.Column("service_level", sa.Float(), nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("min_order", sa.BigInteger(), nullable=True),
        sa.Column("pack_size", sa.BigInteger(), nullable=True),
        sa.Column("order_cost", sa.Float(), nullable=True),
        sa.Column("holding_cost", sa.Float(), nullable=True),
        sa.Column("lead_time_days", sa.Float(), nullable=True),
        sa.Column("lead_time_sd_days", sa.Float(), nullable=True),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_replenishment_settings"),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name="fk_replenishment_settings_item_id"
        ),
    )
    op.create_table(
        "reorder_plans",
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("computed_at", _time(), nullable=False),
        sa.Column("reorder_point", sa.BigInteger(), nullable=False),
        sa.Column("order_quantity", sa.BigInteger(), nullable=False),
        sa.Column("safety_stock", sa.Float(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", "site", name="pk_reorder_plans"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_reorder_plans_item_id"),
    )
    op.create_index("ix_reorder_plans_site", "reorder_plans", ["site", "item_id"])
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("lease_until", _time(), nullable=True),
        sa.Column("last_run_at", _time(), nullable=True),
        sa.Column("cursor", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_job_leases"),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    op.drop_index("ix_reorder_plans_site", table_name="reorder_plans")
    op.drop_table("reorder_plans")
    op.drop_table("replenishment_settings")
    op.drop_index("ix_asn_units_item", table_name="asn_units")
    op.drop_index("ix_asn_units_epc", table_name="asn_units")
    op.drop_table("asn_units")
    op.drop_table("epcis_seen_events")
    op.drop_table("epcis_captures")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("placed_at")
    with op.batch_alter_table("locations") as batch:
        batch.drop_column("sgln")
