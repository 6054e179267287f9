"""Tables of alert delivery: the alert change log and the webhook delivery outbox.

- ``alert_events`` is append-only: one row per change of an alert (opened, updated,
  cleared, acknowledged), written in the transaction that made the change, with a snapshot
  of the alert after it. It is the single source every delivery channel reads: the MQTT
  relay and the webhook fan-out (``relayed_at`` marks rows done; ``lease_until`` keeps two
  instances from relaying one row at the same time), and the live stream (which tails it by
  id, as it tails the ledger).
- ``webhook_deliveries`` is the outbox of webhook calls: one row per (webhook, alert event),
  unique, so a fan-out repeated by a second instance or after a crash adds nothing. A row
  stays ``pending`` with its ``next_attempt_at`` until it is ``delivered`` or ``failed``
  (attempts exhausted); a server restart finds it where it was.

Both are pruned after ``[alerts] history_days`` (delivered or failed rows only).
"""

from __future__ import annotations

import sqlalchemy as sa

from server.store.schema.core import UtcDateTime, alerts, big_id, metadata

ALERT_CHANGES = ("opened", "updated", "cleared", "acknowledged")
DELIVERY_STATES = ("pending", "delivered", "failed")
MAX_WEBHOOK_NAME = 64
MAX_DELIVERY_ERROR = 500

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("alert_id", big_id(), sa.ForeignKey(alerts.c.id), nullable=False),
    sa.Column("change", sa.String(16), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("site", sa.String(64), nullable=True),
    sa.Column("alert", sa.JSON(), nullable=False),
    sa.Column("relayed_at", UtcDateTime(), nullable=True),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.CheckConstraint(
        "change IN ('opened', 'updated', 'cleared', 'acknowledged')", name="change_known"
    ),
    sa.Index(
        "ix_alert_events_unrelayed",
        "id",
        sqlite_where=sa.text("relayed_at IS NULL"),
        postgresql_where=sa.text("relayed_at IS NULL"),
    ),
    sa.Index("ix_alert_events_alert", "alert_id", "id"),
    sa.Index("ix_alert_events_at", "at"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("webhook", sa.String(MAX_WEBHOOK_NAME), nullable=False),
    sa.Column("event_id", big_id(), sa.ForeignKey(alert_events.c.id), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("last_status", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.String(MAX_DELIVERY_ERROR), nullable=True),
    sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state_known"),
    sa.UniqueConstraint("webhook", "event_id", name="uq_webhook_deliveries_webhook"),
    sa.Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_event", "event_id"),
)
