"""Gateway fleet: remote configurations, versioned, and each gateway's last online status.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-06

``gateway_configs`` keeps every remote configuration the server recorded for a gateway
(``PUT /api/v1/gateways/{id}/config``), one row per version, never edited: the newest is
what the config topic carries, the older ones say what ran before. ``gateways`` gains
``online_status``, the last status a gateway sent while online, so the fleet view still
shows versions, outbox and readers of a gateway whose latest news is its last will.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_configs",
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "version", name="pk_gateway_configs"),
        sa.CheckConstraint("version >= 1", name="ck_gateway_configs_version_positive"),
    )
    with op.batch_alter_table("gateways") as batch:
        batch.add_column(sa.Column("online_status", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        batch.drop_column("online_status")
    op.drop_table("gateway_configs")
