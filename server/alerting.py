"""Alert rows: open (once per kind and subject while open), acknowledge, close.

An acknowledgement records who has seen an alert; it stays open until its condition clears
(a gateway coming back online closes ``gateway_offline``). While an alert of a kind and
subject is open, raising it again is a no-op, so a flapping condition is one alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.dialect import upsert
from server.rules.model import AlertSpec
from server.schema import MAX_MESSAGE, alerts
from server.views import AlertView


def alert_view(row: sa.Row[Any]) -> AlertView:
    return AlertView.model_validate(row._mapping)


async def open_alerts(
    conn: AsyncConnection, specs: Sequence[AlertSpec], site: str | None, now: datetime
) -> list[AlertView]:
    """Open each alert unless one of its kind and subject is open; returns the new ones."""
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for spec in specs:
        key = (spec.kind, spec.subject[:256])
        if key in rows:
            continue
        rows[key] = {
            "kind": spec.kind,
            "severity": spec.severity,
            "subject": spec.subject[:256],
            "site": site,
            "message": spec.message[:MAX_MESSAGE],
            "evidence": dict(spec.evidence),
            "opened_at": now,
        }
    if not rows:
        return []
    insert = upsert(conn, alerts)
    statement = insert.on_conflict_do_nothing(
        index_elements=[alerts.c.kind, alerts.c.subject],
        index_where=alerts.c.closed_at.is_(None),
    ).returning(*alerts.c)
    result = await conn.execute(statement, list(rows.values()))
    return [alert_view(row) for row in result]


async def close_alerts(conn: AsyncConnection, kind: str, subject: str, now: datetime) -> int:
    """Close the open alert of ``kind`` about ``subject``; returns how many were closed."""
    result = await conn.execute(
        alerts.update()
        .where(alerts.c.kind == kind, alerts.c.subject == subject, alerts.c.closed_at.is_(None))
        .values(closed_at=now)
    )
    return result.rowcount


async def acknowledge(
    conn: AsyncConnection, alert_id: int, by: str, now: datetime
) -> AlertView | None:
    """Mark an alert seen by ``by`` (idempotent: a second ack keeps the first's record).

    Returns:
        The alert after the acknowledgement, or None if no alert has that id.
    """
    await conn.execute(
        alerts.update()
        .where(alerts.c.id == alert_id, alerts.c.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by=by)
    )
    row = (await conn.execute(sa.select(alerts).where(alerts.c.id == alert_id))).first()
    return alert_view(row) if row is not None else None
