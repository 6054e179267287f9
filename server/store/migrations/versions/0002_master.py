"""Master data and API stock operations: categories, read points, item and location details.

Revision ID: 0002
Revises: 0001
Branch label: master
Create Date: 2024-11-26

New tables ``item_categories`` and ``read_points``; new nullable columns on ``items``
(category, unit, inventory type, reorder point and quantity, updated_at), ``locations``
(name, updated_at) and ``ledger`` (note, and ``reverses``: the row a reversal cancels, at
most once, by a partial unique index).

SQLite cannot add a foreign key to an existing table with ``ALTER TABLE ... ADD
CONSTRAINT``, but it accepts ``REFERENCES`` inside ``ADD COLUMN``; that keeps the upgrade
an in-place change (no copy of a ledger that may hold millions of rows). The downgrade on
SQLite rebuilds ``items`` and ``ledger`` (batch mode), which only works while no other
table's rows point at them; downgrading a SQLite database that holds stock is not
supported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("master",)
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


def _sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


def _add_reference(
    table: str,
    column: str,
    sql_type: str,
    column_type: sa.types.TypeEngine[Any],
    target: str,
    target_column: str,
) -> None:
    """Add a nullable column that references ``target(target_column)``."""
    if _sqlite():
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN {column} {sql_type} "
            f"REFERENCES {target} ({target_column})"
        )
        return
    op.add_column(table, sa.Column(column, column_type, nullable=True))
    op.create_foreign_key(f"fk_{table}_{column}", table, target, [column], [target_column])


def upgrade() -> None:
    op.create_table(
        "item_categories",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_item_categories"),
    )
    op.create_table(
        "read_points",
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("inbound_location", _location(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_read_points"),
        sa.CheckConstraint("source IN ('config', 'api')", name="ck_read_points_source_known"),
    )
    op.create_index("ix_read_points_site", "read_points", ["site"])
    op.create_index("ix_read_points_inbound_location", "read_points", ["inbound_location"])

    _add_reference("items", "category", "VARCHAR(64)", sa.String(64), "item_categories", "code")
    op.add_column("items", sa.Column("unit", sa.String(16), nullable=True))
    op.add_column("items", sa.Column("inventory_type", sa.String(32), nullable=True))
    op.add_column("items", sa.Column("reorder_point", sa.BigInteger(), nullable=True))
    op.add_column("items", sa.Column("reorder_quantity", sa.BigInteger(), nullable=True))
    op.add_column("items", sa.Column("updated_at", _time(), nullable=True))
    op.create_index("ix_items_category", "items", ["category"])

    op.add_column("locations", sa.Column("name", sa.String(256), nullable=True))
    op.add_column("locations", sa.Column("updated_at", _time(), nullable=True))
    op.create_index("ix_locations_parent", "locations", ["parent"])

    op.add_column("ledger", sa.Column("note", sa.String(1000), nullable=True))
    _add_reference("ledger", "reverses", "INTEGER", sa.BigInteger(), "ledger", "id")
    op.create_index(
        "uq_ledger_reverses",
        "ledger",
        ["reverses"],
        unique=True,
        sqlite_where=sa.text("reverses IS NOT NULL"),
        postgresql_where=sa.text("reverses IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_ledger_reverses", table_name="ledger")
    op.drop_index("ix_locations_parent", table_name="locations")
    op.drop_index("ix_items_category", table_name="items")
    with op.batch_alter_table("ledger") as batch:
        if not _sqlite():
            batch.drop_constraint("fk_ledger_reverses", type_="foreignkey")
        batch.drop_column("reverses")
        batch.drop_column("note")
    with op.batch_alter_table("locations") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("name")
    with op.batch_alter_table("items") as batch:
        if not _sqlite():
            batch.drop_constraint("fk_items_category", type_="foreignkey")
        for column in (
            "updated_at",
            "reorder_quantity",
            "reorder_point",
            "inventory_type",
            "unit",
            "category",
        ):
            batch.drop_column(column)
    op.drop_index("ix_read_points_inbound_location", table_name="read_points")
    op.drop_index("ix_read_points_site", table_name="read_points")
    op.drop_table("read_points")
    op.drop_table("item_categories")
