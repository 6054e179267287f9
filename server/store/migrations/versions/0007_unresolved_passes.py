"""Unresolved passes: portal passes without a direction, kept until an operator resolves them.

Revision ID: 0007
Revises: 0012
Create Date: 2026-12-06

One new table, ``unresolved_passes`` (``server.store.schema.passes`` says what each column
holds). Written out in full, not imported from ``server.store.schema.passes``: a revision is
frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "unresolved_passes",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("event_time", _time(), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.Column("read_point", sa.String(256), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("gateway", sa.String(128), nullable=False),
        sa.Column("epc", sa.String(200), nullable=False),
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("pass_group", sa.String(256), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("resolution", sa.String(16), nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolved_at", _time(), nullable=True),
        sa.Column("movement_id", _id(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_unresolved_passes"),
        sa.UniqueConstraint("event_id", name="uq_unresolved_passes_event_id"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_unresolved_passes_item_id"),
        sa.ForeignKeyConstraint(
            ["movement_id"], ["ledger.id"], name="fk_unresolved_passes_movement_id"
        ),
        sa.CheckConstraint(
            "state IN ('open', 'resolved')", name="ck_unresolved_passes_state_known"
        ),
        sa.CheckConstraint(
            "resolution IS NULL OR resolution IN ('in', 'out', 'ignore')",
            name="ck_unresolved_passes_resolution_known",
        ),
    )
    op.create_index("ix_unresolved_passes_time", "unresolved_passes", ["event_time", "id"])
    op.create_index(
        "ix_unresolved_passes_read_point",
        "unresolved_passes",
        ["read_point", "state", "event_time", "id"],
    )
    op.create_index("ix_unresolved_passes_group", "unresolved_passes", ["pass_group", "read_point"])
    op.create_index(
        "ix_unresolved_passes_state", "unresolved_passes", ["state", "event_time", "id"]
    )


def downgrade() -> None:
    op.drop_table("unresolved_passes")
