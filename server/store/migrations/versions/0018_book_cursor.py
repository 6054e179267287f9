"""The valuation books kept in transactions of their own, with their own position.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

``book_cursor`` (one row): the ledger id up to which the rows are in ``book_checkpoints``.
The rollups follower used to keep the checkpoints in its own transaction, so they were as
far as its position: the row starts there. Written out in full: a revision is frozen in
time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "book_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_book_cursor"),
    )
    op.execute(
        "INSERT INTO book_cursor (id, position) "
        "SELECT 1, position FROM history_cursors WHERE name = 'rollups'"
    )


def downgrade() -> None:
    op.drop_table("book_cursor")
