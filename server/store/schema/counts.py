"""Cycle counts as counted (revision 0014): the figures of the count accuracy report.

A count's differences become ledger rows (``server.rules.counts``); a count that agrees
with the books leaves none, so the ledger alone cannot say how accurate counts are. Each
applied count therefore leaves one row per item here, in ingest's transaction (exactly
once, like its event id): what the books held at the location as of the count
(``expected``: units in stock there and stock without EPC) and what was counted. ``item``
is the item's ref as the rules know it (its GTIN, or a reserved SKU), so an item counted
but never stocked still has a line.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.store.schema.core import (
    MAX_EVENT_ID,
    MAX_READ_POINT,
    UtcDateTime,
    big_id,
    location_id,
    metadata,
)

MAX_ITEM_REF = 64

count_results = sa.Table(
    "count_results",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(MAX_EVENT_ID), nullable=False),
    sa.Column("event_time", UtcDateTime(), nullable=False),
    sa.Column("location", location_id(), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("read_point", sa.String(MAX_READ_POINT), nullable=False),
    sa.Column("item", sa.String(MAX_ITEM_REF), nullable=False),
    sa.Column("expected", sa.BigInteger(), nullable=False),
    sa.Column("counted", sa.BigInteger(), nullable=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("event_id", "item", name="uq_count_results_event_item"),
    sa.Index("ix_count_results_time", "event_time", "id"),
    sa.Index("ix_count_results_site", "site", "event_time"),
)
