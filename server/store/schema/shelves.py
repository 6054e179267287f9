"""The table of continuous counting: tagged units that left a shelf and were not read since.

``shelf_watches`` holds one row per unit that departed a shelf read point with
``missing_after_s`` while in stock (``server.ingest.shelves``): where it was, when it left and when
it is due to become ``missing``. Any later read of the unit removes the row; the alert sweep
turns rows past ``due_at`` into a ``shrinkage`` count adjustment. The ledger stays the truth:
a row here is only a reminder, and losing it loses a reminder, never stock.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.store.schema.core import (
    MAX_EPC,
    MAX_EVENT_ID,
    UtcDateTime,
    big_id,
    location_id,
    metadata,
)

MAX_READ_POINT_ID = 256

shelf_watches = sa.Table(
    "shelf_watches",
    metadata,
    sa.Column("epc", sa.String(MAX_EPC), primary_key=True),
    sa.Column("item_id", big_id(), sa.ForeignKey("items.id"), nullable=False),
    sa.Column("read_point", sa.String(MAX_READ_POINT_ID), nullable=False),
    sa.Column("location_id", location_id(), nullable=False),
    sa.Column("departed_at", UtcDateTime(), nullable=False),
    sa.Column("departure_event_id", sa.String(MAX_EVENT_ID), nullable=False),
    sa.Column("due_at", UtcDateTime(), nullable=False),
    sa.Index("ix_shelf_watches_due", "due_at"),
)
