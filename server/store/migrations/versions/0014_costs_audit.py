"""Unit costs, the master-data audit trail, counts as counted, movement rollups without items.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

New tables ``item_costs``, ``receipt_costs`` and ``masterdata_changes`` (see
``server.store.schema.costs``), each append-only in the database itself (triggers refuse UPDATE
and DELETE, as on the ledger); ``count_results`` (``server.store.schema.counts``); and
``history_place_movements`` (see ``server.store.schema.history``), filled here from
``history_movements``. Written out in full, not imported from the schema modules: a
revision is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("item_costs", "receipt_costs", "masterdata_changes")
MESSAGE = "rows of this table are append-only: record a change as a new row"


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _location() -> sa.types.TypeEngine[str]:
    return sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "item_costs",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("unit_cost", sa.BigInteger(), nullable=False),
        sa.Column("effective_from", _time(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_item_costs"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_item_costs_item_id"),
        sa.CheckConstraint("unit_cost >= 0", name="ck_item_costs_unit_cost_not_negative"),
    )
    op.create_index("ix_item_costs_item", "item_costs", ["item_id", "effective_from", "id"])
    op.create_table(
        "receipt_costs",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("ledger_id", _id(), nullable=False),
        sa.Column("unit_cost", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_receipt_costs"),
        sa.ForeignKeyConstraint(["ledger_id"], ["ledger.id"], name="fk_receipt_costs_ledger_id"),
        sa.CheckConstraint("unit_cost >= 0", name="ck_receipt_costs_unit_cost_not_negative"),
    )
    op.create_index("ix_receipt_costs_ledger", "receipt_costs", ["ledger_id", "id"])
    op.create_table(
        "masterdata_changes",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("changed_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_masterdata_changes"),
        sa.CheckConstraint(
            "action IN ('create', 'update', 'delete')", name="ck_masterdata_changes_action_known"
        ),
    )
    op.create_index("ix_masterdata_changes_entity", "masterdata_changes", ["entity", "key", "id"])
    op.create_index("ix_masterdata_changes_time", "masterdata_changes", ["changed_at", "id"])
    op.create_table(
        "count_results",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("event_time", _time(), nullable=False),
        sa.Column("location", _location(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("read_point", sa.String(256), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("expected", sa.BigInteger(), nullable=False),
        sa.Column("counted", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_count_results"),
        sa.UniqueConstraint("event_id", "item", name="uq_count_results_event_item"),
    )
    op.create_index("ix_count_results_time", "count_results", ["event_time", "id"])
    op.create_index("ix_count_results_site", "count_results", ["site", "event_time"])
    op.create_table(
        "history_place_movements",
        sa.Column("period", sa.String(4), nullable=False),
        sa.Column("bucket", _time(), nullable=False),
        sa.Column("location", _location(), nullable=False),
        sa.Column("side", sa.String(3), nullable=False),
        sa.Column("read_point", sa.String(256), nullable=False),
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
            "kind",
            name="pk_history_place_movements",
        ),
        sa.CheckConstraint(
            "period IN ('hour', 'day')", name="ck_history_place_movements_period_known"
        ),
        sa.CheckConstraint("side IN ('in', 'out')", name="ck_history_place_movements_side_known"),
    )
    op.create_index(
        "ix_history_place_movements_site",
        "history_place_movements",
        ["period", "site", "bucket"],
    )
    op.create_index(
        "ix_history_place_movements_read_point",
        "history_place_movements",
        ["period", "read_point", "bucket"],
    )
    op.execute(
        "INSERT INTO history_place_movements "
        "(period, bucket, location, side, read_point, kind, site, count, quantity) "
        "SELECT period, bucket, location, side, read_point, kind, MIN(site), SUM(count), "
        "SUM(quantity) FROM history_movements "
        "GROUP BY period, bucket, location, side, read_point, kind"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION costs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{MESSAGE} (% on % refused)', TG_OP, TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION costs_append_only()"
            )
    else:
        for table in APPEND_ONLY:
            for statement in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_append_only_{statement.lower()} BEFORE {statement} "
                    f"ON {table} BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute("DROP FUNCTION costs_append_only()")
    else:
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only_update")
            op.execute(f"DROP TRIGGER {table}_append_only_delete")
    op.drop_table("history_place_movements")
    op.drop_table("count_results")
    op.drop_table("masterdata_changes")
    op.drop_table("receipt_costs")
    op.drop_table("item_costs")
