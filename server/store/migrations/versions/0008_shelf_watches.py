"""Continuous counting: units that left a shelf and were not read since.

Revision ID: 0008
Revises: 0009
Create Date: 2026-12-06

``shelf_watches``: one row per tagged unit that departed a shelf read point with
``missing_after_s`` while in stock, until it is read again or the alert sweep records it
``missing`` (``server.ingest.shelves``). Written out in full, not imported from
``server.store.schema.shelves``: a revision is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCATION_LENGTH = 128


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _location() -> sa.types.TypeEngine[str]:
    return sa.String(LOCATION_LENGTH).with_variant(
        sa.String(LOCATION_LENGTH, collation="C"), "postgresql"
    )


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shelf_watches",
        sa.Column("epc", sa.String(200), nullable=False),
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("read_point", sa.String(256), nullable=False),
        sa.Column("location_id", _location(), nullable=False),
        sa.Column("departed_at", _time(), nullable=False),
        sa.Column("departure_event_id", sa.String(256), nullable=False),
        sa.Column("due_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("epc", name="pk_shelf_watches"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_shelf_watches_item_id"),
    )
    op.create_index("ix_shelf_watches_due", "shelf_watches", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_shelf_watches_due", table_name="shelf_watches")
    op.drop_table("shelf_watches")
