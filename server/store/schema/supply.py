"""Tables of partner exchange and replenishment (revision 0011).

- ``epcis_captures``: one row per EPCIS document accepted by ``POST /api/v1/epcis/capture``,
  keyed by the SHA-256 of its body, so sending the same document again replays the first
  answer (``summary``) instead of applying it twice.
- ``epcis_seen_events``: the EPCIS ``eventID`` of every captured event (or the hash we
  compute for an event without one): the same event in another document is skipped.
- ``asn_units``: advance shipping notices. One row per EPC a supplier said it shipped
  against a purchase order (unique per order and EPC), and when the portal received it.
  Reconciliation compares these rows with what the portals read (``server.commands.asn``).
- ``replenishment_settings``: per item, what the planner needs beyond the ledger: supplier,
  service level, minimum order, pack size, order and holding costs, a lead time to fall
  back on. Every column is optional (defaults come from ``[replenishment]``).
- ``reorder_plans``: the planner's latest figures per item and site, with every input that
  produced them (``figures``), so the API can explain each number.
- ``job_leases``: one row per periodic job several server instances may run (the planner,
  each EPCIS subscription): whoever moves ``lease_until`` forward with a compare-and-set
  runs it; ``cursor`` is the job's own position (an EPCIS subscription's last ledger id).

``locations.sgln`` and ``orders.placed_at`` (also revision 0011) are declared with their
tables.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.store.schema.core import MAX_EPC, MAX_EVENT_ID, UtcDateTime, big_id, items, metadata
from server.store.schema.orders import MAX_ACTOR, MAX_PARTNER, MAX_SITE, orders

MAX_SUPPLIER = MAX_PARTNER
MAX_JOB_NAME = 128
MAX_JOB_ERROR = 500
REPLENISHMENT_METHODS = ("order_up_to", "eoq")

epcis_captures = sa.Table(
    "epcis_captures",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(MAX_ACTOR), nullable=False),
    sa.Column("events", sa.Integer(), nullable=False),
    sa.Column("summary", sa.JSON(), nullable=False),
)

epcis_seen_events = sa.Table(
    "epcis_seen_events",
    metadata,
    sa.Column("event_id", sa.String(MAX_EVENT_ID), primary_key=True),
    sa.Column("capture_id", big_id(), sa.ForeignKey(epcis_captures.c.id), nullable=False),
)

asn_units = sa.Table(
    "asn_units",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("order_id", big_id(), sa.ForeignKey(orders.c.id), nullable=False),
    sa.Column("epc", sa.String(MAX_EPC), nullable=False),
    sa.Column("item_id", big_id(), sa.ForeignKey(items.c.id), nullable=False),
    sa.Column("event_id", sa.String(MAX_EVENT_ID), nullable=False),
    sa.Column("shipped_at", UtcDateTime(), nullable=False),
    sa.Column("capture_id", big_id(), sa.ForeignKey(epcis_captures.c.id), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=True),
    sa.Column("received_event_id", sa.String(MAX_EVENT_ID), nullable=True),
    sa.UniqueConstraint("order_id", "epc", name="uq_asn_units_order_epc"),
    sa.Index("ix_asn_units_epc", "epc"),
    sa.Index("ix_asn_units_item", "item_id", "order_id"),
)

replenishment_settings = sa.Table(
    "replenishment_settings",
    metadata,
    sa.Column("item_id", big_id(), sa.ForeignKey(items.c.id), primary_key=True),
    sa.Column("supplier", sa.String(MAX_SUPPLIER), nullable=True),
    sa.Column("service_level", sa.Float(), nullable=True),
    sa.Column("method", sa.String(16), nullable=True),
    sa.Column("min_order", sa.BigInteger(), nullable=True),
    sa.Column("pack_size", sa.BigInteger(), nullable=True),
    sa.Column("order_cost", sa.Float(), nullable=True),
    sa.Column("holding_cost", sa.Float(), nullable=True),
    sa.Column("lead_time_days", sa.Float(), nullable=True),
    sa.Column("lead_time_sd_days", sa.Float(), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

reorder_plans = sa.Table(
    "reorder_plans",
    metadata,
    sa.Column("item_id", big_id(), sa.ForeignKey(items.c.id), primary_key=True),
    sa.Column("site", sa.String(MAX_SITE), primary_key=True),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.Column("reorder_point", sa.BigInteger(), nullable=False),
    sa.Column("order_quantity", sa.BigInteger(), nullable=False),
    sa.Column("safety_stock", sa.Float(), nullable=False),
    sa.Column("figures", sa.JSON(), nullable=False),
    sa.Index("ix_reorder_plans_site", "site", "item_id"),
)

job_leases = sa.Table(
    "job_leases",
    metadata,
    sa.Column("name", sa.String(MAX_JOB_NAME), primary_key=True),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.Column("last_run_at", UtcDateTime(), nullable=True),
    sa.Column("cursor", sa.BigInteger(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("last_error", sa.String(MAX_JOB_ERROR), nullable=True),
)
