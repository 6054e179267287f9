"""Movement rollups per site, and an index of daily stock by item.

Revision ID: 0014b
Revises: 0014
Create Date: 2026-12-06

``history_site_movements`` (see ``server.store.schema.history``): the movement sums per site,
side, read point and kind, filled here from ``history_place_movements``; and
``ix_history_stock_daily_item`` so one item's daily stock is found without reading every
row of the table. Written out in full, not imported from the schema modules: a revision is
frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014b"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "history_site_movements",
        sa.Column("period", sa.String(4), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("side", sa.String(3), nullable=False),
        sa.Column("read_point", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "period",
            "bucket",
            "site",
            "side",
            "read_point",
            "kind",
            name="pk_history_site_movements",
        ),
        sa.CheckConstraint(
            "period IN ('hour', 'day')", name="ck_history_site_movements_period_known"
        ),
        sa.CheckConstraint("side IN ('in', 'out')", name="ck_history_site_movements_side_known"),
    )
    op.create_index(
        "ix_history_site_movements_read_point",
        "history_site_movements",
        ["period", "read_point", "bucket"],
    )
    op.execute(
        "INSERT INTO history_site_movements "
        "(period, bucket, site, side, read_point, kind, count, quantity) "
        "SELECT period, bucket, site, side, read_point, kind, SUM(count), SUM(quantity) "
        "FROM history_place_movements GROUP BY period, bucket, site, side, read_point, kind"
    )
    op.create_index("ix_history_stock_daily_item", "history_stock_daily", ["item_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_history_stock_daily_item", table_name="history_stock_daily")
    op.drop_table("history_site_movements")
