"""The short lists the API pages through: alerts, gateways (the fleet view), dead letters.

Each is newest first (gateways by id), at most ``limit`` rows; callers bound the limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import alert_view
from server.queries.views import AlertView, DeadLetterView, GatewayView, ReaderSummary
from server.store.schema.core import alerts, dead_letters, gateway_configs, gateways

AlertFilter = Literal["open", "unacknowledged", "acknowledged", "closed", "all"]


def _alert_condition(state: AlertFilter) -> Sequence[sa.ColumnElement[bool]]:
    table: dict[AlertFilter, Sequence[sa.ColumnElement[bool]]] = {
        "open": (alerts.c.closed_at.is_(None),),
        "unacknowledged": (alerts.c.closed_at.is_(None), alerts.c.acknowledged_at.is_(None)),
        "acknowledged": (alerts.c.closed_at.is_(None), alerts.c.acknowledged_at.is_not(None)),
        "closed": (alerts.c.closed_at.is_not(None),),
        "all": (),
    }
    return table[state]


async def list_alerts(
    conn: AsyncConnection, state: AlertFilter, kind: str | None, limit: int
) -> list[AlertView]:
    """Alerts newest first."""
    conditions = list(_alert_condition(state))
    if kind is not None:
        conditions.append(alerts.c.kind == kind)
    rows = await conn.execute(
        sa.select(alerts)
        .where(*conditions)
        .order_by(alerts.c.opened_at.desc(), alerts.c.id.desc())
        .limit(limit)
    )
    return [alert_view(row) for row in rows]


async def list_gateways(conn: AsyncConnection, limit: int) -> list[GatewayView]:
    """Gateways by id, with the fleet fields of their last online status."""
    newest = (
        sa.select(gateway_configs.c.gateway, sa.func.max(gateway_configs.c.version).label("latest"))
        .group_by(gateway_configs.c.gateway)
        .subquery()
    )
    rows = await conn.execute(
        sa.select(gateways, newest.c.latest)
        .select_from(gateways.outerjoin(newest, newest.c.gateway == gateways.c.id))
        .order_by(gateways.c.id)
        .limit(limit)
    )
    return [fleet_view(row._mapping) for row in rows]


def fleet_view(row: Mapping[Any, Any]) -> GatewayView:
    """A gateway row as the fleet view shows it (see ``GatewayView``)."""
    status: dict[str, Any] = row["status"]
    online: dict[str, Any] | None = row["online_status"]
    details = status if status.get("state") == "online" else online
    fields: dict[str, Any] = {}
    if details is not None:
        fields = {
            "details_at": details.get("at"),
            "config_rejected": details.get("config_rejected"),
            "uptime_s": details.get("uptime_s"),
            "outbox_depth": details.get("buffer_depth"),
            "oldest_event_age_s": details.get("oldest_unacked_age_s"),
            "disk_free_bytes": details.get("disk_free_bytes"),
            "cpu_temp_c": details.get("cpu_temp_c"),
            "throttled": details.get("throttled"),
            "throttled_since_boot": details.get("throttled_since_boot"),
            "readers": [
                ReaderSummary.model_validate(reader) for reader in details.get("readers", [])
            ],
        }
    # What runs: the last online status says it (a last will is built when the gateway
    # connects, so its config version may be older than one applied since); a gateway
    # never seen online has only its offline status to say it.
    for key in ("software_version", "config_version"):
        value = (details or {}).get(key)
        fields[key] = value if value is not None else status.get(key)
    return GatewayView(
        id=row["id"],
        site=row["site"],
        state=row["state"],
        status_at=row["status_at"],
        last_seen=row["last_seen"],
        status=status,
        config_latest=row["latest"],
        **fields,
    )


async def list_dead_letters(
    conn: AsyncConnection, before_id: int | None, limit: int
) -> list[DeadLetterView]:
    """Dead letters newest first, optionally only those with an id below ``before_id``."""
    conditions: list[sa.ColumnElement[bool]] = []
    if before_id is not None:
        conditions.append(dead_letters.c.id < before_id)
    rows = await conn.execute(
        sa.select(dead_letters).where(*conditions).order_by(dead_letters.c.id.desc()).limit(limit)
    )
    return [DeadLetterView.model_validate(row._mapping) for row in rows]
