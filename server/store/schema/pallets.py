"""The tables of logistic units (revision 0013): what a pallet holds, and pallet events held.

``aggregations``: one row per thing a pallet (a logistic unit, named by its SSCC) holds: a
tagged unit (``child_epc``, with its GTIN when it is an SGTIN, ``qty`` 1) or a quantity of
an item without serials (``gtin``, ``lot``, ``qty``; no ``child_epc``). Written through
``POST /api/v1/aggregations`` (``source`` ``api``) or from an EPCIS ``AggregationEvent`` a
partner captured (``source`` ``epcis``, ``event_id`` the EPCIS event's id). ``parent`` is
the SSCC's 18 digits (the GS1 key: the same whatever company prefix length a tag or a label
encodes it with); ``parent_epc`` its EPC URN.

``pallet_holds``: an event of a pallet whose contents the server did not know when it
arrived (``unknown_pallet``): the whole wire event as JSON, the site and the gateway that
sent it, until the pallet's contents are recorded and the event is applied then (its id
was claimed when it arrived, so it still applies exactly once). ``server.commands.pallets`` holds
the rules.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.store.schema.core import MAX_EPC, MAX_EVENT_ID, UtcDateTime, big_id, metadata

SSCC_DIGITS = 18
MAX_LOT = 256
MAX_ACTOR = 256
SOURCES = ("api", "epcis")

aggregations = sa.Table(
    "aggregations",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("parent", sa.String(SSCC_DIGITS), nullable=False),
    sa.Column("parent_epc", sa.String(MAX_EPC), nullable=False),
    sa.Column("child_epc", sa.String(MAX_EPC), nullable=True),
    sa.Column("gtin", sa.String(14), nullable=True),
    sa.Column("lot", sa.String(MAX_LOT), nullable=True),
    sa.Column("qty", sa.Integer(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("event_id", sa.String(MAX_EVENT_ID), nullable=True),
    sa.Column("actor", sa.String(MAX_ACTOR), nullable=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("qty >= 1", name="qty_positive"),
    sa.CheckConstraint("child_epc IS NOT NULL OR gtin IS NOT NULL", name="child_or_quantity"),
    sa.CheckConstraint("source IN ('api', 'epcis')", name="source_known"),
    sa.UniqueConstraint("parent", "child_epc", name="uq_aggregations_child"),
    sa.Index("ix_aggregations_parent", "parent", "id"),
    sa.Index("ix_aggregations_child", "child_epc"),
    sa.Index("ix_aggregations_gtin", "gtin"),
)

pallet_holds = sa.Table(
    "pallet_holds",
    metadata,
    sa.Column("event_id", sa.String(MAX_EVENT_ID), primary_key=True),
    sa.Column("sscc", sa.String(SSCC_DIGITS), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("gateway", sa.String(MAX_ACTOR), nullable=False),
    sa.Column("event", sa.JSON(), nullable=False),
    sa.Column("held_at", UtcDateTime(), nullable=False),
    sa.Index("ix_pallet_holds_sscc", "sscc"),
)
