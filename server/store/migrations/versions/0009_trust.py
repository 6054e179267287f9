"""Dead letters say what went wrong (kind) and when they were replayed.

Revision ID: 0009
Revises: 0011
Create Date: 2026-12-06

``kind`` names the check that refused the input (``event``, ``read_point``,
``unknown_gateway``, ``gateway_refused``, ``clock_skew``, ...), so quarantined events can be
found and replayed by kind; ``replayed_at`` marks the ones ``stockgate server
replay-dead-letters`` has applied (kept for the record, never replayed twice). The index
serves the replay's scan of what is still waiting.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("kind", sa.String(32), nullable=True))
        batch.add_column(sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_dead_letters_kind", "dead_letters", ["kind", "replayed_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_kind", table_name="dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("replayed_at")
        batch.drop_column("kind")
