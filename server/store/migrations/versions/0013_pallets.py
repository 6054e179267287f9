"""Logistic units: what a pallet (SSCC) holds, and events of pallets not known yet.

Revision ID: 0013
Revises: 0015
Create Date: 2026-12-06

Two new tables, ``aggregations`` and ``pallet_holds`` (``server.store.schema.pallets`` says what
each column holds). Written out in full, not imported from ``server.store.schema.pallets``: a
revision is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "aggregations",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("parent", sa.String(18), nullable=False),
        sa.Column("parent_epc", sa.String(200), nullable=False),
        sa.Column("child_epc", sa.String(200), nullable=True),
        sa.Column("gtin", sa.String(14), nullable=True),
        sa.Column("lot", sa.String(256), nullable=True),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=True),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aggregations"),
        sa.UniqueConstraint("parent", "child_epc", name="uq_aggregations_child"),
        sa.CheckConstraint("qty >= 1", name="ck_aggregations_qty_positive"),
        sa.CheckConstraint(
            "child_epc IS NOT NULL OR gtin IS NOT NULL", name="ck_aggregations_child_or_quantity"
        ),
        sa.CheckConstraint("source IN ('api', 'epcis')", name="ck_aggregations_source_known"),
    )
    op.create_index("ix_aggregations_parent", "aggregations", ["parent", "id"])
    op.create_index("ix_aggregations_child", "aggregations", ["child_epc"])
    op.create_index("ix_aggregations_gtin", "aggregations", ["gtin"])
    op.create_table(
        "pallet_holds",
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("sscc", sa.String(18), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("gateway", sa.String(256), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("held_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_pallet_holds"),
    )
    op.create_index("ix_pallet_holds_sscc", "pallet_holds", ["sscc"])


def downgrade() -> None:
    op.drop_index("ix_pallet_holds_sscc", table_name="pallet_holds")
    op.drop_table("pallet_holds")
    op.drop_index("ix_aggregations_gtin", table_name="aggregations")
    op.drop_index("ix_aggregations_child", table_name="aggregations")
    op.drop_index("ix_aggregations_parent", table_name="aggregations")
    op.drop_table("aggregations")
