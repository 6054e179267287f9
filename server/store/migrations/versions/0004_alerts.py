"""Alert delivery: alert updates, the alert change log, the webhook delivery outbox.

Revision ID: 0004
Revises: 0001
Branch label: alerts
Create Date: 2024-11-26

New nullable columns on ``alerts`` (``updated_at``, ``count``: an open alert is updated
while its condition holds); new tables ``alert_events`` (one row per change of an alert,
what the MQTT relay, the webhooks and the live stream read) and ``webhook_deliveries`` (the
webhook outbox). Written out in full, not imported from ``server.store.schema.alerts``: a revision
is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("alerts",)
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("alerts", sa.Column("updated_at", _time(), nullable=True))
    op.add_column("alerts", sa.Column("count", sa.Integer(), nullable=True))
    op.create_table(
        "alert_events",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("alert_id", _id(), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("alert", sa.JSON(), nullable=False),
        sa.Column("relayed_at", _time(), nullable=True),
        sa.Column("lease_until", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_alert_events_alert_id"),
        sa.CheckConstraint(
            "change IN ('opened', 'updated', 'cleared', 'acknowledged')",
            name="ck_alert_events_change_known",
        ),
    )
    op.create_index(
        "ix_alert_events_unrelayed",
        "alert_events",
        ["id"],
        sqlite_where=sa.text("relayed_at IS NULL"),
        postgresql_where=sa.text("relayed_at IS NULL"),
    )
    op.create_index("ix_alert_events_alert", "alert_events", ["alert_id", "id"])
    op.create_index("ix_alert_events_at", "alert_events", ["at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("webhook", sa.String(64), nullable=False),
        sa.Column("event_id", _id(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _time(), nullable=False),
        sa.Column("lease_until", _time(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["alert_events.id"], name="fk_webhook_deliveries_event_id"
        ),
        sa.UniqueConstraint("webhook", "event_id", name="uq_webhook_deliveries_webhook"),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')",
            name="ck_webhook_deliveries_state_known",
        ),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("alert_events")
    # SQLite: batch mode rebuilds the table without the columns.
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("count")
        batch.drop_column("updated_at")
