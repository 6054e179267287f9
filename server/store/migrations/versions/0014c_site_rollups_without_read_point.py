"""Movement rollups per site without the read point.

Revision ID: 0014c
Revises: 0014b
Create Date: 2026-12-06

``history_site_movements`` as made by 0014b kept the read point, and on a ledger whose
shelf readers name one read point per bin that left it nearly as large as the rollup per
location. It is made again keyed by period, bucket, site, side and kind only (queries with
a read point read ``history_place_movements``), and filled from ``history_place_movements``.
Written out in full: a revision is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014c"
down_revision: str | Sequence[str] | None = "0014b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


FILL_WITHOUT_READ_POINT = (
    "INSERT INTO history_site_movements (period, bucket, site, side, kind, count, quantity) "
    "SELECT period, bucket, site, side, kind, SUM(count), SUM(quantity) "
    "FROM history_place_movements GROUP BY period, bucket, site, side, kind"
)
FILL_WITH_READ_POINT = (
    "INSERT INTO history_site_movements "
    "(period, bucket, site, side, read_point, kind, count, quantity) "
    "SELECT period, bucket, site, side, read_point, kind, SUM(count), SUM(quantity) "
    "FROM history_place_movements GROUP BY period, bucket, site, side, read_point, kind"
)


def _create(with_read_point: bool) -> None:
    keys = [
        "period",
        "bucket",
        "site",
        "side",
        *(["read_point"] if with_read_point else []),
        "kind",
    ]
    items: list[sa.schema.SchemaItem] = [
        sa.Column("period", sa.String(4), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("side", sa.String(3), nullable=False),
        *([sa.Column("read_point", sa.String(256), nullable=False)] if with_read_point else []),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*keys, name="pk_history_site_movements"),
        sa.CheckConstraint(
            "period IN ('hour', 'day')", name="ck_history_site_movements_period_known"
        ),
        sa.CheckConstraint("side IN ('in', 'out')", name="ck_history_site_movements_side_known"),
    ]
    op.create_table("history_site_movements", *items)
    if with_read_point:
        op.create_index(
            "ix_history_site_movements_read_point",
            "history_site_movements",
            ["period", "read_point", "bucket"],
        )
    op.execute(FILL_WITH_READ_POINT if with_read_point else FILL_WITHOUT_READ_POINT)


def upgrade() -> None:
    op.drop_table("history_site_movements")
    _create(with_read_point=False)


def downgrade() -> None:
    op.drop_table("history_site_movements")
    _create(with_read_point=True)
