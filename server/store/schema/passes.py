"""Unresolved passes (revision 0007): portal passes that reached the server without a direction.

A pass the edge could not give a direction is neither a receipt nor a shipment, so the
stock rules have nothing to apply; instead of vanishing it becomes one row here, written
in the transaction that claims its event id (so exactly once, like every event), and waits
for an operator to say what happened (``server.commands.unresolved``).

Columns:

- what was seen: ``event_id`` (unique: one row per pass), ``event_time``, ``read_point``,
  ``site`` (the read point's site when the pass arrived, for keys restricted to sites),
  ``gateway`` (who sent it), ``epc``, ``item_id`` (the item its EPC names; created as
  unreviewed when unknown, as a receipt would), ``pass_group`` (the wire ``group``: the
  tags that crossed the read point together), ``evidence`` (the event's whole ``reads``
  object as JSON, so evidence the edge adds later needs no migration);
- what became of it: ``state`` (``open``/``resolved``), ``resolution`` (``in``, ``out``,
  ``ignore``), ``resolved_by`` (the API key's name), ``resolved_at``, ``movement_id``
  (the ledger row the resolution appended; null for ``ignore`` or a direction the read
  point takes no stock effect for).
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa

from server.store.schema.core import (
    MAX_EPC,
    MAX_EVENT_ID,
    MAX_READ_POINT,
    UtcDateTime,
    big_id,
    metadata,
)

PassState = Literal["open", "resolved"]
Resolution = Literal["in", "out", "ignore"]
PASS_STATES: tuple[PassState, ...] = ("open", "resolved")
RESOLUTIONS: tuple[Resolution, ...] = ("in", "out", "ignore")
MAX_GROUP = 256

unresolved_passes = sa.Table(
    "unresolved_passes",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(MAX_EVENT_ID), nullable=False, unique=True),
    sa.Column("event_time", UtcDateTime(), nullable=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.Column("read_point", sa.String(MAX_READ_POINT), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("gateway", sa.String(128), nullable=False),
    sa.Column("epc", sa.String(MAX_EPC), nullable=False),
    sa.Column("item_id", big_id(), sa.ForeignKey("items.id"), nullable=False),
    sa.Column("pass_group", sa.String(MAX_GROUP), nullable=True),
    sa.Column("evidence", sa.JSON(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("resolution", sa.String(16), nullable=True),
    sa.Column("resolved_by", sa.String(128), nullable=True),
    sa.Column("resolved_at", UtcDateTime(), nullable=True),
    sa.Column("movement_id", big_id(), sa.ForeignKey("ledger.id"), nullable=True),
    sa.CheckConstraint("state IN ('open', 'resolved')", name="state_known"),
    sa.CheckConstraint(
        "resolution IS NULL OR resolution IN ('in', 'out', 'ignore')", name="resolution_known"
    ),
    sa.Index("ix_unresolved_passes_time", "event_time", "id"),
    sa.Index("ix_unresolved_passes_read_point", "read_point", "state", "event_time", "id"),
    sa.Index("ix_unresolved_passes_group", "pass_group", "read_point"),
    sa.Index("ix_unresolved_passes_state", "state", "event_time", "id"),
)
