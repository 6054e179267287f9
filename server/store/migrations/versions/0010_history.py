"""Time-series history: follower positions, movement and stock rollups; an append-only ledger.

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-06

New tables ``history_cursors``, ``history_movements`` and ``history_stock_daily`` (see
``server.store.schema.history``), and triggers that refuse UPDATE and DELETE of ledger rows in
the database itself (corrections are new rows; the history followers rely on a row never
changing once they have read it). Written out in full, not imported from
``server.store.schema.history``: a revision is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_MESSAGE = "ledger rows are append-only: record a correction as a new row"


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _location() -> sa.types.TypeEngine[str]:
    return sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "history_cursors",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("lease_until", _time(), nullable=True),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_history_cursors"),
    )
    op.create_table(
        "history_movements",
        sa.Column("period", sa.String(4), nullable=False),
        sa.Column("bucket", _time(), nullable=False),
        sa.Column("location", _location(), nullable=False),
        sa.Column("side", sa.String(3), nullable=False),
        sa.Column("read_point", sa.String(256), nullable=False),
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "period",
            "bucket",
            "location",
            "side",
            "read_point",
            "item_id",
            "kind",
            name="pk_history_movements",
        ),
        sa.CheckConstraint("period IN ('hour', 'day')", name="ck_history_movements_period_known"),
        sa.CheckConstraint("side IN ('in', 'out')", name="ck_history_movements_side_known"),
    )
    op.create_index("ix_history_movements_site", "history_movements", ["period", "site", "bucket"])
    op.create_index(
        "ix_history_movements_read_point", "history_movements", ["period", "read_point", "bucket"]
    )
    op.create_index(
        "ix_history_movements_item", "history_movements", ["period", "item_id", "bucket"]
    )
    op.create_table(
        "history_stock_daily",
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("day", _time(), nullable=False),
        sa.Column("quantity_in", sa.BigInteger(), nullable=False),
        sa.Column("quantity_out", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "item_id", "day", name="pk_history_stock_daily"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE} (% refused)', TG_OP; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger "
            "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
        )
    else:
        for statement in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_append_only_{statement.lower()} BEFORE {statement} "
                f"ON ledger BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ledger_append_only ON ledger")
        op.execute("DROP FUNCTION ledger_append_only()")
    else:
        op.execute("DROP TRIGGER ledger_append_only_update")
        op.execute("DROP TRIGGER ledger_append_only_delete")
    op.drop_table("history_stock_daily")
    op.drop_table("history_movements")
    op.drop_table("history_cursors")
