"""Join the master-data, orders and alerts branches into one head.

Revision ID: 0005
Revises: 0002, 0003, 0004
Create Date: 2026-11-25

The three were written side by side, each from 0001; they touch different tables, so
their order does not matter. From here on there is one head again, and new revisions
follow this one.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | Sequence[str] | None = ("0002", "0003", "0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: a merge point."""


def downgrade() -> None:
    """Nothing to change: a merge point."""
