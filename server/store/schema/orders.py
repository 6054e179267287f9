"""Tables of orders: purchase, sales and transfer orders, their lines, and their stock figures.

- ``orders`` holds all three kinds (``kind``), one workflow (``server.rules.orders``). An
  order number is unique within its kind and is a location segment, so a transfer order's
  goods on the road can sit at ``transit.<number>``. ``site`` and ``destination_site`` are
  the sites of ``location`` and ``destination``, kept for filtering and site checks.
  ``last_line_no`` is the highest line number ever given, so numbers are never reused.
- ``order_lines``: one item and quantity per line, with the ``received`` and ``shipped``
  counters ingest adds to (increments, so concurrent batches commute). A counter may pass
  the quantity (over-received, over-shipped).
- ``order_positions``: per item and location, what open orders add to the stock rows
  (``on_order``, ``allocated``, ``in_transit``), maintained in the same transaction as every
  change of an order or its counters, by increments (as ``balances`` are). It is derived
  data: ``server.queries.orders.rebuild_positions`` recomputes it from the open orders. Every key
  also has a ``balances`` row (on hand 0 if need be), so the stock listing finds it.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.store.schema.core import UtcDateTime, big_id, items, location_id, locations, metadata

ORDER_KINDS = ("purchase", "sales", "transfer")
ORDER_STATUSES = ("draft", "open", "closed", "cancelled")
ORDER_NUMBER_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
"""An order number: one location segment (``PO-2024-0042``)."""
MAX_ORDER_NUMBER = 32
MAX_PARTNER = 256
MAX_ORDER_NOTE = 2000
MAX_ACTOR = 128
MAX_SITE = 64

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("number", sa.String(MAX_ORDER_NUMBER), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("location", location_id(), sa.ForeignKey(locations.c.id), nullable=False),
    sa.Column("site", sa.String(MAX_SITE), nullable=False),
    sa.Column("destination", location_id(), sa.ForeignKey(locations.c.id), nullable=True),
    sa.Column("destination_site", sa.String(MAX_SITE), nullable=True),
    sa.Column("partner", sa.String(MAX_PARTNER), nullable=True),
    sa.Column("expected_at", UtcDateTime(), nullable=True),
    sa.Column("note", sa.String(MAX_ORDER_NOTE), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("created_by", sa.String(MAX_ACTOR), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(MAX_ACTOR), nullable=False),
    sa.Column("closed_at", UtcDateTime(), nullable=True),
    sa.Column("last_line_no", sa.Integer(), nullable=False),
    # Revision 0011: when the order was opened (placed with the supplier); lead times
    # are measured from it.
    sa.Column("placed_at", UtcDateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('purchase', 'sales', 'transfer')", name="kind_known"),
    sa.CheckConstraint("status IN ('draft', 'open', 'closed', 'cancelled')", name="status_known"),
    sa.UniqueConstraint("kind", "number", name="uq_orders_kind_number"),
    sa.Index("ix_orders_kind_status", "kind", "status", "id"),
    sa.Index("ix_orders_status_site", "status", "kind", "site", "destination_site"),
)

order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("order_id", big_id(), sa.ForeignKey(orders.c.id), nullable=False),
    sa.Column("line_no", sa.Integer(), nullable=False),
    sa.Column("item_id", big_id(), sa.ForeignKey(items.c.id), nullable=False),
    sa.Column("quantity", sa.BigInteger(), nullable=False),
    sa.Column("received", sa.BigInteger(), nullable=False),
    sa.Column("shipped", sa.BigInteger(), nullable=False),
    sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    sa.CheckConstraint("received >= 0 AND shipped >= 0", name="counters_not_negative"),
    sa.UniqueConstraint("order_id", "line_no", name="uq_order_lines_order_line"),
    sa.Index("ix_order_lines_item", "item_id", "order_id"),
)

order_positions = sa.Table(
    "order_positions",
    metadata,
    sa.Column("item_id", big_id(), sa.ForeignKey(items.c.id), primary_key=True),
    sa.Column("location_id", location_id(), sa.ForeignKey(locations.c.id), primary_key=True),
    sa.Column("on_order", sa.BigInteger(), nullable=False),
    sa.Column("allocated", sa.BigInteger(), nullable=False),
    sa.Column("in_transit", sa.BigInteger(), nullable=False),
)
