"""Tables of the time-series history (revision 0010): follower positions and SQL rollups.

Everything here is derived from the ledger and can be rebuilt from it
(``stockgate server rebuild-history``); the ledger stays the only source of truth.

- ``history_cursors``: one row per ledger follower (``rollups``, ``influxdb``): the highest
  ledger id it has handed to its sink (every id at or below it is settled: present or
  known never to commit), and the lease that lets one server instance at a time follow.
- ``history_movements``: ledger rows counted per bucket (``period`` hour or day, its UTC
  start) and per side of a movement: a row that moves stock out of ``from_location`` and
  into ``to_location`` adds to the ``out`` side of the first and the ``in`` side of the
  second, so a location's inflow and outflow are separate rows and a transfer is never
  counted twice on one side. ``read_point`` is ``''`` for rows without one (a key column
  cannot be NULL and stay unique on both databases).
- ``history_place_movements``: the same sums without the item (revision 0014), so a query
  over a site, location, read point or kind reads one row per place and kind instead of one
  per item there; queries that filter or group by item read ``history_movements``.
- ``history_site_movements``: the same without the location and the read point either
  (revisions 0014b, 0014c): what a query over whole sites without a read point reads.
- ``history_stock_daily``: stock crossing a site's boundary per UTC day and item
  (``quantity_in``, ``quantity_out``); closing stock on a day is the running sum up to it.
  Moves inside a site change no site's stock and add nothing here.
- ``book_checkpoints`` (revision 0016; 0017: only the books that changed): the valuation
  books (``server.reports.valuation``) as they stood at a checkpoint ``boundary`` (every
  ``CHECKPOINT_DAYS`` days, UTC), after the ledger rows before it up to the books'
  position, as JSON (``server.reports.book_state``); a book has a row at a boundary only
  when a ledger row moved its value since the boundary before, so the books at a boundary
  are each book's newest row at or before it. ``book_keys`` lists every (item, site) with
  a book (revision 0017); ``book_cursor`` holds the ledger id up to which the rows are in
  the checkpoints (revision 0018: they are kept in transactions of their own, after the
  rollups'; one row); ``book_checkpoint_marks`` lists the boundaries whose books are
  complete, and ``book_cost_marks`` how many cost rows each item had when its books were
  last computed from the start (a report replays an item whose costs changed since). A
  report reads the books at the checkpoint before the moment it asks about and replays
  only the ledger rows after it.
- ``location_snapshots`` (revision 0020): what each location held of each item (non-zero
  quantities only) at a snapshot ``boundary`` (every ``SNAPSHOT_DAYS`` days, UTC), after
  the ledger rows before it up to the books' position (kept in the books' transactions,
  ``server.reports.location_snapshots``); ``location_snapshot_marks`` lists the boundaries
  with a snapshot. Stock by location as of a moment starts from the nearest snapshot.
"""

from __future__ import annotations

from typing import Final, Literal

import sqlalchemy as sa

from server.store.schema.core import MAX_READ_POINT, UtcDateTime, big_id, location_id, metadata

Period = Literal["hour", "day"]
PERIODS: Final[tuple[Period, ...]] = ("hour", "day")
Side = Literal["in", "out"]
SIDES: Final[tuple[Side, ...]] = ("in", "out")
NO_READ_POINT: Final = ""
MAX_CURSOR_NAME: Final = 32
MAX_OWNER: Final = 128

history_cursors = sa.Table(
    "history_cursors",
    metadata,
    sa.Column("name", sa.String(MAX_CURSOR_NAME), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("owner", sa.String(MAX_OWNER), nullable=True),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

history_movements = sa.Table(
    "history_movements",
    metadata,
    sa.Column("period", sa.String(4), nullable=False),
    sa.Column("bucket", UtcDateTime(), nullable=False),
    sa.Column("location", location_id(), nullable=False),
    sa.Column("side", sa.String(3), nullable=False),
    sa.Column("read_point", sa.String(MAX_READ_POINT), nullable=False),
    sa.Column("item_id", big_id(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("quantity", sa.BigInteger(), nullable=False),
    # Revision 0021: keyed by item first, and on SQLite the key is the table (WITHOUT
    # ROWID), so an item's days are next to each other on disk (a page of an item's 90 days
    # read some 270 rows from as many places of the file, each a disk read when not in the
    # OS's cache); the buckets of every item through their own index. Every index ends with
    # the figures (and the one by bucket with the site), so it answers without the rows,
    # which are not in time order: a lookup by key cost more than one by rowid did.
    sa.PrimaryKeyConstraint(
        "period", "item_id", "bucket", "location", "side", "read_point", "kind"
    ),
    sa.CheckConstraint("period IN ('hour', 'day')", name="period_known"),
    sa.CheckConstraint("side IN ('in', 'out')", name="side_known"),
    sa.Index("ix_history_movements_site", "period", "site", "bucket", "count", "quantity"),
    sa.Index(
        "ix_history_movements_read_point", "period", "read_point", "bucket", "count", "quantity"
    ),
    sa.Index("ix_history_movements_bucket", "period", "bucket", "site", "count", "quantity"),
    sqlite_with_rowid=False,
)

history_place_movements = sa.Table(
    "history_place_movements",
    metadata,
    sa.Column("period", sa.String(4), nullable=False),
    sa.Column("bucket", UtcDateTime(), nullable=False),
    sa.Column("location", location_id(), nullable=False),
    sa.Column("side", sa.String(3), nullable=False),
    sa.Column("read_point", sa.String(MAX_READ_POINT), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("quantity", sa.BigInteger(), nullable=False),
    # Revision 0021: keyed by read point, kind and side first (SQLite: WITHOUT ROWID), so a
    # dock's receipts per hour are next to each other on disk, in the order of the page; the
    # buckets of every place through their own index.
    sa.PrimaryKeyConstraint("period", "read_point", "kind", "side", "bucket", "location"),
    sa.CheckConstraint("period IN ('hour', 'day')", name="period_known"),
    sa.CheckConstraint("side IN ('in', 'out')", name="side_known"),
    # Revision 0019: the page's keys after the bucket, so a page over a site grouped by
    # location and kind is read in the order it is served (no sort, no rows past the page).
    # Revision 0021: both indexes end with the figures, as in ``history_movements``.
    sa.Index(
        "ix_history_place_movements_site",
        "period",
        "site",
        "bucket",
        "side",
        "location",
        "kind",
        "count",
        "quantity",
    ),
    sa.Index("ix_history_place_movements_bucket", "period", "bucket", "site", "count", "quantity"),
    sqlite_with_rowid=False,
)

history_site_movements = sa.Table(
    "history_site_movements",
    metadata,
    sa.Column("period", sa.String(4), primary_key=True),
    sa.Column("bucket", UtcDateTime(), primary_key=True),
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("side", sa.String(3), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("quantity", sa.BigInteger(), nullable=False),
    sa.CheckConstraint("period IN ('hour', 'day')", name="period_known"),
    sa.CheckConstraint("side IN ('in', 'out')", name="side_known"),
)

history_stock_daily = sa.Table(
    "history_stock_daily",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("item_id", big_id(), primary_key=True),
    sa.Column("day", UtcDateTime(), primary_key=True),
    sa.Column("quantity_in", sa.BigInteger(), nullable=False),
    sa.Column("quantity_out", sa.BigInteger(), nullable=False),
    # Revision 0014b: one item's days (``/history/stock``) without reading every site's.
    sa.Index("ix_history_stock_daily_item", "item_id", "day"),
)


book_checkpoint_marks = sa.Table(
    "book_checkpoint_marks",
    metadata,
    sa.Column("boundary", UtcDateTime(), primary_key=True),
)

book_checkpoints = sa.Table(
    "book_checkpoints",
    metadata,
    # Revision 0017: keyed by book first, so a book's newest row at or before a boundary is
    # one index look.
    sa.Column("item_id", big_id(), primary_key=True),
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("boundary", UtcDateTime(), primary_key=True),
    sa.Column("book", sa.Text(), nullable=False),
)

book_keys = sa.Table(
    "book_keys",
    metadata,
    sa.Column("item_id", big_id(), primary_key=True),
    sa.Column("site", sa.String(64), primary_key=True),
)

book_cursor = sa.Table(
    "book_cursor",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
)

book_cost_marks = sa.Table(
    "book_cost_marks",
    metadata,
    sa.Column("item_id", big_id(), primary_key=True),
    sa.Column("item_costs", sa.BigInteger(), nullable=False),
    sa.Column("receipt_costs", sa.BigInteger(), nullable=False),
)

location_snapshot_marks = sa.Table(
    "location_snapshot_marks",
    metadata,
    sa.Column("boundary", UtcDateTime(), primary_key=True),
)

location_snapshots = sa.Table(
    "location_snapshots",
    metadata,
    # Revision 0020: keyed by boundary first, so one snapshot is one range of the key.
    sa.Column("boundary", UtcDateTime(), primary_key=True),
    sa.Column("item_id", big_id(), primary_key=True),
    sa.Column("location", location_id(), primary_key=True),
    sa.Column("quantity", sa.BigInteger(), nullable=False),
)
