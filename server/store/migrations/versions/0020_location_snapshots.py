"""What each location held of each item, kept every four weeks.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

``location_snapshots`` and ``location_snapshot_marks`` (see
``server.store.schema.history``): stock by location as of a past moment starts from the
nearest snapshot instead of summing the ledger from its first row or back from the
balances. They start empty: the rollups follower fills them a few at a time as it goes on
(``server.reports.location_snapshots``), ``stockgate server rebuild-history`` from the
whole ledger at once; until then the report sums the ledger as before. Written out in full:
a revision is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "location_snapshot_marks",
        sa.Column("boundary", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("boundary", name="pk_location_snapshot_marks"),
    )
    op.create_table(
        "location_snapshots",
        sa.Column("boundary", sa.DateTime(timezone=True), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "location",
            sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("boundary", "item_id", "location", name="pk_location_snapshots"),
    )


def downgrade() -> None:
    op.drop_table("location_snapshots")
    op.drop_table("location_snapshot_marks")
