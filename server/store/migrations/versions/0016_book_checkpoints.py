"""Valuation books kept at checkpoints, so reports replay only the ledger after one.

Revision ID: 0016
Revises: 0014c
Create Date: 2026-12-06

``book_checkpoints``, ``book_checkpoint_marks`` and ``book_cost_marks`` (see
``server.store.schema.history``). They start empty: the rollups follower fills them as it
goes on, ``stockgate server rebuild-history`` from the whole ledger; until then reports
replay the ledger as before. Written out in full: a revision is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0014c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "book_checkpoint_marks",
        sa.Column("boundary", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("boundary", name="pk_book_checkpoint_marks"),
    )
    op.create_table(
        "book_checkpoints",
        sa.Column("boundary", sa.DateTime(timezone=True), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("book", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("boundary", "item_id", "site", name="pk_book_checkpoints"),
    )
    op.create_table(
        "book_cost_marks",
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_costs", sa.BigInteger(), nullable=False),
        sa.Column("receipt_costs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_book_cost_marks"),
    )


def downgrade() -> None:
    op.drop_table("book_cost_marks")
    op.drop_table("book_checkpoints")
    op.drop_table("book_checkpoint_marks")
