"""Writing unresolved passes and keeping their alert in step, inside the caller's transaction.

Ingest (``server.ingest.apply``) records a pass without a direction here in the transaction that
claims its event id, so it is kept exactly once; the rules raise ``unresolved_passes``
for its read point in the same plan. Resolving (``server.commands.unresolved``) closes that alert
once no pass at the read point is open any more (``clear_if_done``). The alert sweep
(``sweep_alerts``) re-checks every read point, so the alert holds exactly while a pass is
open even if two instances raced on it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import AlertChange, clear_alert, raise_alerts
from server.rules.alerts import UNRESOLVED_PASSES
from server.rules.model import UnresolvedPass
from server.store.schema.core import alerts
from server.store.schema.passes import unresolved_passes


def _evidence(record: UnresolvedPass) -> dict[str, object]:
    # The whole ``reads`` object, whatever evidence fields the edge sends with it.
    reads = record.event.reads
    return reads.model_dump(mode="json", exclude_none=True) if reads is not None else {}


async def insert_unresolved(
    conn: AsyncConnection,
    records: Sequence[UnresolvedPass],
    item_ids: Mapping[str, int],
    gateway: str,
    now: datetime,
) -> None:
    """One open row per pass (their event ids are fresh, so none exists yet)."""
    if not records:
        return
    # Plain executemany, not ``dialect.execute_many``: these rows are few (a share of the
    # portal passes) and carry JSON, which each driver binds its own way.
    await conn.execute(
        unresolved_passes.insert(),
        [
            {
                "event_id": record.event.event_id,
                "event_time": record.event.event_time,
                "recorded_at": now,
                "read_point": record.event.read_point,
                "site": record.site,
                "gateway": gateway,
                "epc": record.event.epc,
                "item_id": item_ids[record.item],
                "pass_group": record.event.group,
                "evidence": _evidence(record),
                "state": "open",
                "resolution": None,
                "resolved_by": None,
                "resolved_at": None,
                "movement_id": None,
            }
            for record in records
        ],
    )


async def open_counts(conn: AsyncConnection, read_points: Collection[str]) -> dict[str, int]:
    """How many passes are open at each of ``read_points`` (absent: none)."""
    if not read_points:
        return {}
    rows = await conn.execute(
        sa.select(unresolved_passes.c.read_point, sa.func.count())
        .where(
            unresolved_passes.c.read_point.in_(sorted(read_points)),
            unresolved_passes.c.state == "open",
        )
        .group_by(unresolved_passes.c.read_point)
    )
    return {point: int(count) for point, count in rows}


async def clear_if_done(
    conn: AsyncConnection, read_points: Collection[str], now: datetime
) -> list[AlertChange]:
    """Close ``unresolved_passes`` of each read point where no pass is open any more."""
    still = await open_counts(conn, read_points)
    changes: list[AlertChange] = []
    for point in sorted(set(read_points) - set(still)):
        change = await clear_alert(
            conn,
            UNRESOLVED_PASSES.kind,
            point,
            reason="every unresolved pass at the read point is resolved",
            now=now,
        )
        if change is not None:
            changes.append(change)
    return changes


async def sweep_alerts(conn: AsyncConnection, now: datetime) -> list[AlertChange]:
    """Open ``unresolved_passes`` where a pass is open without one; close it where none is.

    An alert already open is left as it is (ingest keeps its evidence current).
    """
    kind = UNRESOLVED_PASSES.kind
    holding = {
        point: (site, int(count))
        for point, site, count in await conn.execute(
            sa.select(
                unresolved_passes.c.read_point,
                sa.func.min(unresolved_passes.c.site),
                sa.func.count(),
            )
            .where(unresolved_passes.c.state == "open")
            .group_by(unresolved_passes.c.read_point)
        )
    }
    alerted = set(
        (
            await conn.execute(
                sa.select(alerts.c.subject).where(
                    alerts.c.kind == kind, alerts.c.closed_at.is_(None)
                )
            )
        ).scalars()
    )
    specs = [
        UNRESOLVED_PASSES.raise_(point, {"read_point": point, "open": count}, site=site)
        for point, (site, count) in sorted(holding.items())
        if point not in alerted
    ]
    changes = await raise_alerts(conn, specs, None, now, update_existing=False)
    for point in sorted(alerted - set(holding)):
        change = await clear_alert(
            conn, kind, point, reason="no unresolved pass at the read point is open", now=now
        )
        if change is not None:
            changes.append(change)
    return changes
