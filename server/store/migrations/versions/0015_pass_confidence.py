"""A portal pass's confidence kept on its ledger row.

Revision ID: 0015
Revises: 0008
Create Date: 2026-12-06

``ledger.confidence``: the edge's confidence in the direction of the portal pass that made
the row (0..1); null for rows of anything else (scans, API operations, resolved passes,
shelf sweeps). The console's Doors page shows it per pass and per door and day.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: no row is rewritten (SQLite and PostgreSQL
    # only change the table's definition), so the append-only triggers are not involved.
    op.add_column("ledger", sa.Column("confidence", sa.Float(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite 3.35+ drops a column in place); a batch copy of the table
    # would lose the ledger's append-only triggers.
    op.execute("ALTER TABLE ledger DROP COLUMN confidence")
