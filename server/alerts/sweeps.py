"""Periodic checks of the alert conditions no single message re-evaluates.

Every ``[alerts] sweep_interval_s`` each check runs in its own transaction:

- ``stale_gateways``: a gateway still marked online whose last status is older than
  ``gateway_stale_s`` is marked offline and gets ``gateway_offline`` (its last will may
  never come: a power cut, a broker restart, a network split). Its next status closes it.
- ``stock_levels``: ``low_stock`` and ``overstock`` reconciled against the current
  levels (``server.alerts.stock_levels``).
- ``negative_stock``: ``negative_stock`` reconciled against the balances below zero now
  (ingest raises and clears it as batches apply; the sweep catches what two instances
  writing one balance at once left behind).
- ``missing_units``: shelf watches past due become missing units (``server.ingest.shelves``;
  multi-instance safe through the adjustment's event id, claimed like any event's).
- ``reviewed_items``: ``unknown_item`` / ``unidentified_epc`` close once their item is
  marked reviewed.
- ``unresolved passes``: ``unresolved_passes`` open exactly at the read points with an
  open unresolved pass (``server.ingest.unresolved_rows.sweep_alerts``).
- ``quiet``: occurrence alerts not raised again for ``occurrence_quiet_s`` close.
- ``prune``: alert change events and finished webhook deliveries older than
  ``history_days`` are deleted (bounded per run).

Several server instances may sweep at once: every change is a compare-and-set (``UPDATE
... WHERE`` the old state, inserts guarded by the open-alert unique index), so two sweeps
produce one change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.stock_levels import level_alerts, stock_levels
from server.alerts.store import AlertChange, clear_alert, close_quiet, raise_alerts, reconcile
from server.config.alerts import AlertSettings
from server.config.settings import ReadPointSettings
from server.errors import StoreError
from server.ingest.negative_stock import negative_balances
from server.ingest.shelf_watches import watching
from server.ingest.shelves import missing_units
from server.ingest.unresolved_rows import sweep_alerts as unresolved_alerts
from server.rules.alerts import (
    GATEWAY_OFFLINE,
    NEGATIVE_STOCK,
    QUIET_KINDS,
    STOCK_LEVEL_KINDS,
    UNIDENTIFIED_EPC,
    UNKNOWN_ITEM,
)
from server.store.database import Store
from server.store.schema.alerts import alert_events, webhook_deliveries
from server.store.schema.core import alerts, gateways, items
from wire.models import now_utc

log = logging.getLogger(__name__)

PRUNE_BATCH = 10_000
"""Rows deleted per table per sweep at most, so one sweep never holds a long lock."""


async def stale_gateways(conn: AsyncConnection, now: datetime, stale_s: float) -> list[AlertChange]:
    """Mark gateways silent for ``stale_s`` offline and raise ``gateway_offline``."""
    cutoff = now - timedelta(seconds=stale_s)
    rows = (
        await conn.execute(
            gateways.update()
            .where(gateways.c.state == "online", gateways.c.last_seen < cutoff)
            .values(state="offline")
            .returning(gateways.c.id, gateways.c.site, gateways.c.last_seen)
        )
    ).all()
    specs = [
        GATEWAY_OFFLINE.raise_(
            row.id,
            {
                "site": row.site,
                "reason": "stale",
                "last_seen": row.last_seen.isoformat(),
                "stale_s": stale_s,
            },
            site=row.site,
        )
        for row in rows
    ]
    return await raise_alerts(conn, specs, None, now)


async def check_stock_levels(
    conn: AsyncConnection, now: datetime, min_update_s: float
) -> list[AlertChange]:
    """Reconcile ``low_stock`` and ``overstock`` with the current stock levels."""
    holding = level_alerts(await stock_levels(conn))
    return await reconcile(
        conn,
        kinds=STOCK_LEVEL_KINDS,
        holding=holding,
        now=now,
        min_update_s=min_update_s,
        reason="stock level back within policy",
    )


async def check_negative_stock(
    conn: AsyncConnection, now: datetime, min_update_s: float
) -> list[AlertChange]:
    """Reconcile ``negative_stock`` with the balances below zero."""
    return await reconcile(
        conn,
        kinds=(NEGATIVE_STOCK.kind,),
        holding=await negative_balances(conn),
        now=now,
        min_update_s=min_update_s,
        reason="the balance is back at zero or above",
    )


async def reviewed_items(conn: AsyncConnection, now: datetime) -> list[AlertChange]:
    """Close ``unknown_item`` / ``unidentified_epc`` alerts of items marked reviewed."""
    by_gtin = sa.and_(
        alerts.c.kind == UNKNOWN_ITEM.kind,
        sa.exists().where(items.c.gtin == alerts.c.subject, items.c.reviewed.is_(True)),
    )
    by_sku = sa.and_(
        alerts.c.kind == UNIDENTIFIED_EPC.kind,
        sa.exists().where(items.c.sku == alerts.c.subject, items.c.reviewed.is_(True)),
    )
    rows = (
        await conn.execute(
            sa.select(alerts.c.kind, alerts.c.subject).where(
                alerts.c.closed_at.is_(None), sa.or_(by_gtin, by_sku)
            )
        )
    ).all()
    changes: list[AlertChange] = []
    for row in rows:
        change = await clear_alert(
            conn, row.kind, row.subject, reason="the item was reviewed", now=now
        )
        if change is not None:
            changes.append(change)
    return changes


async def prune(conn: AsyncConnection, now: datetime, history_days: int) -> int:
    """Delete finished deliveries and relayed alert events older than ``history_days``."""
    cutoff = now - timedelta(days=history_days)
    old_deliveries = (
        sa.select(webhook_deliveries.c.id)
        .where(webhook_deliveries.c.state != "pending", webhook_deliveries.c.finished_at < cutoff)
        .limit(PRUNE_BATCH)
        .scalar_subquery()
    )
    deleted = (
        await conn.execute(
            webhook_deliveries.delete().where(webhook_deliveries.c.id.in_(old_deliveries))
        )
    ).rowcount
    old_events = (
        sa.select(alert_events.c.id)
        .where(
            alert_events.c.relayed_at.is_not(None),
            alert_events.c.at < cutoff,
            ~sa.exists().where(webhook_deliveries.c.event_id == alert_events.c.id),
        )
        .limit(PRUNE_BATCH)
        .scalar_subquery()
    )
    deleted += (
        await conn.execute(alert_events.delete().where(alert_events.c.id.in_(old_events)))
    ).rowcount
    return deleted


Check = Callable[[AsyncConnection, datetime], Awaitable[object]]
ReadPointTable = Callable[[], Awaitable[Mapping[str, ReadPointSettings]]]
"""The read point table as ingest sees it (``ReadPointCatalog.table``)."""


class AlertSweeper:
    """Runs the checks above every ``sweep_interval_s``.

    Args:
        store: the database.
        settings: ``[alerts]``.
        clock: the current time (UTC).
        on_alerts: called after a sweep that changed alerts (wakes the relay).
        read_points: the read point table (which shelves are watched); None: none are.
    """

    def __init__(
        self,
        store: Store,
        settings: AlertSettings,
        *,
        clock: Callable[[], datetime] = now_utc,
        on_alerts: Callable[[], None] | None = None,
        read_points: ReadPointTable | None = None,
    ) -> None:
        self._store = store
        self._read_points = read_points
        self._settings = settings
        self._clock = clock
        self._on_alerts = on_alerts

    def _checks(self) -> list[tuple[str, Check]]:
        settings = self._settings

        async def stale(conn: AsyncConnection, now: datetime) -> object:
            return await stale_gateways(conn, now, settings.gateway_stale_s)

        async def levels(conn: AsyncConnection, now: datetime) -> object:
            return await check_stock_levels(conn, now, settings.min_update_s)

        async def negative(conn: AsyncConnection, now: datetime) -> object:
            return await check_negative_stock(conn, now, settings.min_update_s)

        async def shelves(conn: AsyncConnection, now: datetime) -> object:
            table = self._read_points
            return await missing_units(conn, now, await table() if table is not None else {})

        async def quiet(conn: AsyncConnection, now: datetime) -> object:
            since = now - timedelta(seconds=settings.occurrence_quiet_s)
            return await close_quiet(conn, QUIET_KINDS, since, now)

        async def history(conn: AsyncConnection, now: datetime) -> object:
            return await prune(conn, now, settings.history_days)

        return [
            ("stale gateways", stale),
            ("stock levels", levels),
            ("negative stock", negative),
            ("missing units", shelves),
            ("reviewed items", reviewed_items),
            ("unresolved passes", unresolved_alerts),
            ("quiet alerts", quiet),
            ("alert history", history),
        ]

    async def _changes_stock(self, name: str) -> bool:
        """Whether check ``name`` may change what the stock rules read (``Store.begin``'s
        ``stock``): only the missing units (recorded missing), and only where a read point
        watches a shelf; the other checks write alerts and gateway states."""
        if name != "missing units":
            return False
        return self._read_points is None or watching(await self._read_points())

    async def sweep_once(self) -> int:
        """Run every check once; returns how many alert changes they made.

        A failing check is logged and the others still run (the next sweep retries it).
        """
        changed = 0
        for name, check in self._checks():
            try:
                stock = await self._changes_stock(name)
                async with self._store.begin(f"checking {name}", stock=stock) as conn:
                    result = await check(conn, self._clock())
            except StoreError as err:
                log.warning("alert sweep: %s", err)
                continue
            if isinstance(result, list):
                changed += len(result)
        if changed and self._on_alerts is not None:
            self._on_alerts()
        return changed

    async def run(self) -> None:
        """Sweep until cancelled."""
        while True:
            await self.sweep_once()
            await asyncio.sleep(self._settings.sweep_interval_s)
