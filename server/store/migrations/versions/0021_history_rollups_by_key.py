"""The movement rollups stored in the order their pages are read.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

``history_movements`` is keyed by (period, item_id, bucket, location, side, read_point,
kind) and ``history_place_movements`` by (period, read_point, kind, side, bucket,
location): an item's buckets, and a read point's buckets of one kind and side, first. On
SQLite both become WITHOUT ROWID tables, whose rows are stored in the order of that key:
an item's 90 days (some 270 rows at 10,000,000 ledger rows) or a dock's receipts per hour
over a week are then a few neighbouring pages of the file instead of as many pages as
rows, scattered in the order the follower first wrote them (each a disk read when the page
is not in the OS's cache: pages of history took 30-100 ms at the benchmark's size when
they were not). The index by item and the place rollup's index by read point are dropped
(the keys do their work), and each table gets an index by bucket (period, bucket) for
queries over every item or place, which the old keys served.

The other indexes end with ``count`` and ``quantity`` (and those by bucket with ``site``),
so they answer their queries without the rows: with the rows no longer in the order of
time, finding a row's figures by its key cost more than the rowid did. At 1,000,000
ledger rows, p50 of the benchmark's queries read from the rollup by item (old tables /
rekeyed / rekeyed with the figures in the indexes): a dock's week 2.0 / 6.9 / 1.4 ms, a
site's week 9.3 / 15.5 / 6.8 ms, 90 days of every site 128 / 396 / 114 ms; a site's week
from the place rollup 7.3 / 11.4 / 5.5 ms. The follower's upserts, which change only the
figures, change those index entries too: its rollups took 3.28 s for the 54,000 rows of
``server.events_per_s`` against 3.13 s with the figures in no index, same machine.

SQLite cannot change a table's key or rowid in place: each table is copied, in the new
key's order, into a new one that takes its name. At the benchmark's size (27 million and
12 million rollup rows) that takes minutes, once, as the server starts after the upgrade.
PostgreSQL changes the key's constraint in place. Written out in full: a revision is
frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINE = "history_movements"
PLACE = "history_place_movements"
FINE_COLUMNS = (
    "period",
    "bucket",
    "location",
    "side",
    "read_point",
    "item_id",
    "kind",
    "site",
    "count",
    "quantity",
)
PLACE_COLUMNS = tuple(name for name in FINE_COLUMNS if name != "item_id")
FINE_KEY = ("period", "item_id", "bucket", "location", "side", "read_point", "kind")
PLACE_KEY = ("period", "read_point", "kind", "side", "bucket", "location")
OLD_FINE_KEY = ("period", "bucket", "location", "side", "read_point", "item_id", "kind")
OLD_PLACE_KEY = ("period", "bucket", "location", "side", "read_point", "kind")


def _columns(item: bool) -> list[sa.Column[object]]:
    location = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")
    columns: list[sa.Column[object]] = [
        sa.Column("period", sa.String(4), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", location, nullable=False),
        sa.Column("side", sa.String(3), nullable=False),
        sa.Column("read_point", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
    ]
    if item:
        item_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
        columns.insert(5, sa.Column("item_id", item_id, nullable=False))
    return columns


def _copy(table: str, columns: Sequence[str], key: Sequence[str], rowid: bool) -> None:
    """SQLite: ``table`` made again with ``key`` (and a rowid or not), its rows copied in
    the key's order; its indexes go with the old table."""
    new = f"{table}_0021"
    op.create_table(
        new,
        *_columns("item_id" in columns),
        sa.PrimaryKeyConstraint(*key, name=f"pk_{table}"),
        sa.CheckConstraint("period IN ('hour', 'day')", name=f"ck_{table}_period_known"),
        sa.CheckConstraint("side IN ('in', 'out')", name=f"ck_{table}_side_known"),
        sqlite_with_rowid=rowid,
    )
    source = sa.table(table, *(sa.column(name) for name in columns))
    ordered = sa.select(*source.c).order_by(*(source.c[name] for name in key))
    target = sa.table(new, *(sa.column(name) for name in columns))
    op.execute(sa.insert(target).from_select(list(columns), ordered))
    op.drop_table(table)
    op.rename_table(new, table)


def _rekey(table: str, key: Sequence[str]) -> None:
    """PostgreSQL: ``table``'s key constraint made again over ``key``."""
    op.drop_constraint(f"pk_{table}", table, type_="primary")
    op.create_primary_key(f"pk_{table}", table, list(key))


NEW_INDEXES: dict[str, tuple[str, list[str]]] = {
    "ix_history_movements_site": (FINE, ["period", "site", "bucket", "count", "quantity"]),
    "ix_history_movements_read_point": (
        FINE,
        ["period", "read_point", "bucket", "count", "quantity"],
    ),
    "ix_history_movements_bucket": (FINE, ["period", "bucket", "site", "count", "quantity"]),
    "ix_history_place_movements_site": (
        PLACE,
        ["period", "site", "bucket", "side", "location", "kind", "count", "quantity"],
    ),
    "ix_history_place_movements_bucket": (
        PLACE,
        ["period", "bucket", "site", "count", "quantity"],
    ),
}
OLD_INDEXES: dict[str, tuple[str, list[str]]] = {
    "ix_history_movements_site": (FINE, ["period", "site", "bucket"]),
    "ix_history_movements_read_point": (FINE, ["period", "read_point", "bucket"]),
    "ix_history_movements_item": (FINE, ["period", "item_id", "bucket"]),
    "ix_history_place_movements_site": (
        PLACE,
        ["period", "site", "bucket", "side", "location", "kind"],
    ),
    "ix_history_place_movements_read_point": (
        PLACE,
        ["period", "read_point", "bucket", "kind", "side"],
    ),
}


def _change(
    drop: dict[str, tuple[str, list[str]]],
    create: dict[str, tuple[str, list[str]]],
    fine_key: Sequence[str],
    place_key: Sequence[str],
    rowid: bool,
) -> None:
    """The indexes ``drop`` replaced by ``create`` and the tables keyed by ``fine_key`` and
    ``place_key`` (SQLite: copied, their indexes dropped with the old tables)."""
    if op.get_bind().dialect.name == "sqlite":
        _copy(FINE, FINE_COLUMNS, fine_key, rowid=rowid)
        _copy(PLACE, PLACE_COLUMNS, place_key, rowid=rowid)
    else:
        for name, (table, _) in drop.items():
            op.drop_index(name, table_name=table)
        _rekey(FINE, fine_key)
        _rekey(PLACE, place_key)
    for name, (table, columns) in create.items():
        op.create_index(name, table, columns)


def upgrade() -> None:
    _change(OLD_INDEXES, NEW_INDEXES, FINE_KEY, PLACE_KEY, rowid=False)


def downgrade() -> None:
    _change(NEW_INDEXES, OLD_INDEXES, OLD_FINE_KEY, OLD_PLACE_KEY, rowid=True)
