"""The planner: reorder points per item and site from history, and draft purchase orders.

One run (``run_planner``, in one transaction):

1. reads daily demand and lead times (``server.replenishment.history``), the items'
   replenishment settings, their manual reorder values, and the stock position per item
   and site (on hand from ``balances``; on order, in transit and allocated from
   ``order_positions``), and classes items A/B/C per site by demand volume;
2. computes each (item, site)'s figures (``server.replenishment.method``) and stores them
   in ``reorder_plans`` with every input (the API explains each figure from there); a
   manual ``reorder_point`` / ``reorder_quantity`` in the item master wins over the
   computed one (both are shown);
3. for items whose position is at or below their reorder point, drafts purchase orders,
   one per site and supplier: an existing planner draft for that site and supplier is
   updated (its lines set to the new quantities) rather than a second one made; drafts
   are never opened by the planner — an operator confirms them
   (``POST /api/v1/replenishment/drafts/{id}/confirm``) or edits or cancels them through
   the purchase order API;
4. reconciles ``reorder_suggested`` (subject: the draft's number, evidence: its id and
   lines) with the planner drafts that are still drafts: confirming or cancelling one
   clears its alert.

Which (item, site) pairs are planned: those with demand in the window, and items with a
replenishment settings row at every site where they have a stock row. The run takes the
``replenishment`` job lease first (``server.store.job_leases``): on schedule only when the last
run is ``interval_s`` old, so with several instances one of them plans per interval; on
demand (the API) always, waiting for a run in progress to finish.

Steps 1 and 2 are in ``server.replenishment.plans``, steps 3 and 4 in
``server.replenishment.drafts``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.replenishment import ReplenishmentSettings
from server.errors import StoreError
from server.replenishment.drafts import Draft, draft_orders, suggestion_alerts
from server.replenishment.plans import compute_plans, store_plans
from server.store import job_leases
from server.store.database import Store
from server.store.dialect import upsert
from server.store.schema.supply import replenishment_settings
from wire.models import now_utc

log = logging.getLogger(__name__)

JOB = "replenishment"
LEASE_S = 600.0


@dataclass(frozen=True, slots=True)
class PlannerRun:
    """What one run did."""

    at: datetime
    plans: int
    suggested: int
    drafts: tuple[Draft, ...]


async def plan_once(
    conn: AsyncConnection, settings: ReplenishmentSettings, now: datetime
) -> PlannerRun:
    """Steps 1 to 4 in the caller's transaction."""
    plans = await compute_plans(conn, settings, now)
    await store_plans(conn, plans, now)
    drafts = await draft_orders(conn, plans, settings, now)
    await suggestion_alerts(conn, now)
    suggested = sum(1 for plan in plans if plan.to_order() > 0)
    return PlannerRun(now, len(plans), suggested, tuple(drafts))


async def run_planner(
    store: Store, settings: ReplenishmentSettings, *, scheduled: bool, now: datetime
) -> PlannerRun | None:
    """One run under the job lease; None when it was not this instance's turn."""
    async with store.begin("planning replenishment") as conn:
        turn = await job_leases.claim(
            conn, JOB, now, LEASE_S, every_s=settings.interval_s if scheduled else 0.0
        )
        if turn is None:
            return None
        result = await plan_once(conn, settings, now)
        await job_leases.release(conn, turn, now)
    return result


class ReplenishmentScheduler:
    """Runs the planner every ``interval_s`` (one instance per interval).

    Args:
        store: the database.
        settings: ``[replenishment]``.
        clock: the current time (UTC).
        on_alerts: called after a run (wakes the alert relay).
    """

    def __init__(
        self,
        store: Store,
        settings: ReplenishmentSettings,
        *,
        clock: Callable[[], datetime] = now_utc,
        on_alerts: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._on_alerts = on_alerts

    async def run(self) -> None:
        """Plan until cancelled."""
        pause = min(self._settings.interval_s, 60.0)
        while True:
            try:
                result = await run_planner(
                    self._store, self._settings, scheduled=True, now=self._clock()
                )
            except StoreError as err:
                log.warning("replenishment: %s", err)
                result = None
            if result is not None:
                log.info(
                    "replenishment: %d plans, %d below their reorder point, %d drafts",
                    result.plans,
                    result.suggested,
                    len(result.drafts),
                )
                if self._on_alerts is not None:
                    self._on_alerts()
            await asyncio.sleep(pause)


async def save_settings(
    conn: AsyncConnection, item_id: int, values: Mapping[str, Any], now: datetime
) -> None:
    """Create or replace an item's replenishment settings."""
    row = {"item_id": item_id, "updated_at": now, **values}
    insert = upsert(conn, replenishment_settings).values(**row)
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[replenishment_settings.c.item_id],
            set_={key: insert.excluded[key] for key in row if key != "item_id"},
        )
    )
