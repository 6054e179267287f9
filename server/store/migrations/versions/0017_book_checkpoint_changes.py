"""Valuation books kept daily, only those that changed, found by book.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

``book_checkpoints`` is made again keyed by (item, site, boundary) instead of (boundary,
item, site): a checkpoint now holds a row only for the books a ledger row changed since the
one before (a boundary every day instead of every week), and a report reads each book's
newest row at or before the boundary it needs, one index look per book. ``book_keys``
lists the books. The kept books and marks are emptied (their format changed): the rollups
follower fills them again as it goes on, ``stockgate server rebuild-history`` from the
whole ledger; until then reports replay the ledger. Written out in full: a revision is
frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _item_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.drop_table("book_checkpoints")
    op.execute("DELETE FROM book_checkpoint_marks")
    op.execute("DELETE FROM book_cost_marks")
    op.create_table(
        "book_checkpoints",
        sa.Column("item_id", _item_id(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("boundary", sa.DateTime(timezone=True), nullable=False),
        sa.Column("book", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", "site", "boundary", name="pk_book_checkpoints"),
    )
    op.create_table(
        "book_keys",
        sa.Column("item_id", _item_id(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("item_id", "site", name="pk_book_keys"),
    )


def downgrade() -> None:
    op.drop_table("book_keys")
    op.drop_table("book_checkpoints")
    op.execute("DELETE FROM book_checkpoint_marks")
    op.execute("DELETE FROM book_cost_marks")
    op.create_table(
        "book_checkpoints",
        sa.Column("boundary", sa.DateTime(timezone=True), nullable=False),
        sa.Column("item_id", _item_id(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("book", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("boundary", "item_id", "site", name="pk_book_checkpoints"),
    )
