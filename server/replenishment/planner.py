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
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import reconcile
from server.commands.order_models import LineIn, OrderIn
from server.commands.orders import create_order
from server.config.replenishment import ReplenishmentSettings
from server.errors import StoreError
from server.replenishment.history import daily_demand, lead_times
from server.replenishment.method import (
    AbcClass,
    OrderTerms,
    ReorderFigures,
    abc_classes,
    demand_stats,
    lead_time_stats,
    order_quantity,
    reorder_figures,
)
from server.rules.alerts import REORDER_SUGGESTED
from server.rules.model import AlertSpec
from server.rules.orders import PURCHASE
from server.rules.policy import TRANSIT_SITE
from server.store import job_leases
from server.store.database import Store
from server.store.dialect import upsert
from server.store.schema.core import balances, items, locations
from server.store.schema.orders import order_lines, order_positions, orders
from server.store.schema.supply import reorder_plans, replenishment_settings
from server.store.sites import site_of
from wire.models import now_utc

log = logging.getLogger(__name__)

PLANNER_ACTOR = "replenishment"
"""``created_by`` of the drafts the planner makes (and finds again)."""
JOB = "replenishment"
LEASE_S = 600.0
CHUNK = 500
MAX_DRAFT_LINES = 500


@dataclass(frozen=True, slots=True)
class Position:
    """What an item has at a site and what is coming or promised."""

    on_hand: int = 0
    on_order: int = 0
    in_transit: int = 0
    allocated: int = 0

    @property
    def projected(self) -> int:
        """``on hand + on order + in transit - allocated``: the inventory position."""
        return self.on_hand + self.on_order + self.in_transit - self.allocated


@dataclass(frozen=True, slots=True)
class ItemPlan:
    """The plan of one item at one site."""

    item_id: int
    sku: str
    gtin: str | None
    site: str
    supplier: str | None
    abc: AbcClass
    figures: ReorderFigures
    terms: OrderTerms
    position: Position
    manual_point: int | None
    manual_quantity: int | None

    @property
    def reorder_point(self) -> int:
        return self.manual_point if self.manual_point is not None else self.figures.reorder_point

    @property
    def source(self) -> str:
        return "manual" if self.manual_point is not None else "computed"

    def to_order(self) -> int:
        """What to order now (0 while the position is above the reorder point)."""
        if self.position.projected > self.reorder_point:
            return 0
        if self.manual_quantity is not None:
            return self.manual_quantity
        up_to = max(self.figures.order_up_to, self.reorder_point + 1)
        return order_quantity(
            self.position.projected, self.reorder_point, up_to, self.figures.eoq, self.terms
        )

    def order_quantity(self) -> int:
        """The quantity one order brings (stored; what ``to_order`` gives at the point)."""
        if self.manual_quantity is not None:
            return self.manual_quantity
        up_to = max(self.figures.order_up_to, self.reorder_point + 1)
        return order_quantity(
            self.reorder_point, self.reorder_point, up_to, self.figures.eoq, self.terms
        )

    def explain(self) -> dict[str, Any]:
        position = self.position
        return {
            "source": self.source,
            "computed": self.figures.explain(),
            "manual": {"reorder_point": self.manual_point, "order_quantity": self.manual_quantity},
            "abc_class": self.abc,
            "supplier": self.supplier,
            "terms": {
                "method": self.terms.method,
                "review_days": self.terms.review_days,
                "min_order": self.terms.min_order,
                "pack_size": self.terms.pack_size,
                "order_cost": self.terms.order_cost,
                "holding_cost": self.terms.holding_cost,
            },
            "position": {
                "on_hand": position.on_hand,
                "on_order": position.on_order,
                "in_transit": position.in_transit,
                "allocated": position.allocated,
                "projected": position.projected,
                "projected_at_lead_time": round(
                    position.projected - self.figures.demand.mean * self.figures.lead_time.mean,
                    4,
                ),
            },
            "to_order": self.to_order(),
        }


@dataclass(frozen=True, slots=True)
class Draft:
    """A draft purchase order the planner made or updated."""

    order_id: int
    number: str
    site: str
    supplier: str | None
    lines: tuple[tuple[str, int], ...]
    """(SKU, quantity)."""
    created: bool


@dataclass(frozen=True, slots=True)
class PlannerRun:
    """What one run did."""

    at: datetime
    plans: int
    suggested: int
    drafts: tuple[Draft, ...]


async def _positions(
    conn: AsyncConnection, item_ids: Sequence[int]
) -> dict[tuple[int, str], Position]:
    totals: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for start in range(0, len(item_ids), CHUNK):
        chunk = item_ids[start : start + CHUNK]
        for item_id, location, on_hand in await conn.execute(
            sa.select(balances.c.item_id, balances.c.location_id, balances.c.on_hand).where(
                balances.c.item_id.in_(chunk)
            )
        ):
            totals[(item_id, site_of(location))][0] += int(on_hand)
        for row in await conn.execute(
            sa.select(order_positions).where(order_positions.c.item_id.in_(chunk))
        ):
            figures = totals[(row.item_id, site_of(row.location_id))]
            figures[1] += int(row.on_order)
            figures[2] += int(row.in_transit)
            figures[3] += int(row.allocated)
    return {key: Position(*values) for key, values in totals.items() if key[1] != TRANSIT_SITE}


async def compute_plans(
    conn: AsyncConnection, settings: ReplenishmentSettings, now: datetime
) -> list[ItemPlan]:
    """Every (item, site)'s plan (steps 1 and 2 of the module docstring, without storing)."""
    today = now.date()
    start = today - timedelta(days=settings.demand_window_days)
    demand = await daily_demand(conn, start, settings.demand_window_days)
    measured = await lead_times(conn, now - timedelta(days=settings.lead_time_window_days), now)
    configured = {row.item_id: row for row in await conn.execute(sa.select(replenishment_settings))}
    keys = set(demand)
    configured_ids = sorted(configured)
    stocked = await _positions(conn, sorted({item for item, _ in keys} | set(configured_ids)))
    keys.update(key for key in stocked if key[0] in configured)
    chosen = sorted(keys)[: settings.max_items]
    item_rows: dict[int, Any] = {}
    ids = sorted({item for item, _ in chosen})
    for begin in range(0, len(ids), CHUNK):
        for row in await conn.execute(
            sa.select(
                items.c.id,
                items.c.sku,
                items.c.gtin,
                items.c.reorder_point,
                items.c.reorder_quantity,
            ).where(items.c.id.in_(ids[begin : begin + CHUNK]))
        ):
            item_rows[row.id] = row
    by_site: dict[str, dict[int, float]] = defaultdict(dict)
    for item_id, site in chosen:
        by_site[site][item_id] = sum(demand.get((item_id, site), ()))
    classes = {
        (item_id, site): grade
        for site, volume in by_site.items()
        for item_id, grade in abc_classes(
            volume, settings.class_a_share, settings.class_b_share
        ).items()
    }
    suppliers_seen: dict[int, Counter[str | None]] = defaultdict(Counter)
    for (partner, item_id), samples in measured.items():
        suppliers_seen[item_id][partner] += len(samples)
    levels = {
        "A": settings.service_level_a,
        "B": settings.service_level_b,
        "C": settings.service_level_c,
    }
    plans: list[ItemPlan] = []
    for item_id, site in chosen:
        item = item_rows.get(item_id)
        if item is None:
            continue
        own = configured.get(item_id)
        supplier = own.supplier if own is not None and own.supplier else None
        if supplier is None and suppliers_seen.get(item_id):
            supplier = suppliers_seen[item_id].most_common(1)[0][0]
        samples = measured.get((supplier, item_id)) or [
            sample
            for (_, other), values in measured.items()
            if other == item_id
            for sample in values
        ]
        stats = demand_stats(
            demand.get((item_id, site), [0.0] * settings.demand_window_days),
            alpha=settings.croston_alpha,
            intermittent_adi=settings.intermittent_adi,
        )
        lead = lead_time_stats(
            samples,
            min_samples=settings.min_lead_time_samples,
            item_days=own.lead_time_days if own is not None else None,
            item_sd_days=own.lead_time_sd_days if own is not None else None,
            default_days=settings.default_lead_time_days,
            default_sd_days=settings.default_lead_time_sd_days,
        )
        grade = classes.get((item_id, site), "C")
        level = own.service_level if own is not None and own.service_level else levels[grade]
        terms = OrderTerms(
            method=(own.method if own is not None and own.method else "order_up_to"),
            review_days=settings.review_days,
            min_order=own.min_order if own is not None else None,
            pack_size=own.pack_size if own is not None else None,
            order_cost=own.order_cost if own is not None else None,
            holding_cost=own.holding_cost if own is not None else None,
        )
        plans.append(
            ItemPlan(
                item_id=item_id,
                sku=item.sku,
                gtin=item.gtin,
                site=site,
                supplier=supplier,
                abc=grade,
                figures=reorder_figures(stats, lead, level, terms, settings.service_measure),
                terms=terms,
                position=stocked.get((item_id, site), Position()),
                manual_point=item.reorder_point,
                manual_quantity=item.reorder_quantity,
            )
        )
    return plans


async def store_plans(conn: AsyncConnection, plans: Sequence[ItemPlan], now: datetime) -> None:
    """Replace ``reorder_plans`` with ``plans``."""
    await conn.execute(reorder_plans.delete())
    if not plans:
        return
    await conn.execute(
        reorder_plans.insert(),
        [
            {
                "item_id": plan.item_id,
                "site": plan.site,
                "computed_at": now,
                "reorder_point": plan.reorder_point,
                "order_quantity": plan.order_quantity(),
                "safety_stock": plan.figures.safety_stock,
                "figures": plan.explain(),
            }
            for plan in plans
        ],
    )


async def _receiving_location(conn: AsyncConnection, site: str, zone: str) -> str:
    wanted = f"{site}.{zone}"
    found = await conn.scalar(sa.select(locations.c.id).where(locations.c.id == wanted))
    return wanted if found is not None else site


async def _planner_drafts(conn: AsyncConnection) -> list[Any]:
    return list(
        await conn.execute(
            sa.select(orders.c.id, orders.c.number, orders.c.site, orders.c.partner)
            .where(
                orders.c.kind == "purchase",
                orders.c.status == "draft",
                orders.c.created_by == PLANNER_ACTOR,
            )
            .order_by(orders.c.id)
        )
    )


async def _number(conn: AsyncConnection, now: datetime, index: int) -> str:
    base = f"RP-{now:%y%m%d-%H%M%S}-{index}"
    number, extra = base, 0
    while await conn.scalar(
        sa.select(orders.c.id).where(orders.c.kind == "purchase", orders.c.number == number)
    ):
        extra += 1
        number = f"{base}-{extra}"
    return number


async def _update_draft(
    conn: AsyncConnection, order_id: int, wanted: Mapping[int, int], now: datetime
) -> None:
    """Set the draft's line quantities for ``wanted`` (item id -> quantity)."""
    existing = {
        row.item_id: row
        for row in await conn.execute(
            sa.select(order_lines.c.id, order_lines.c.item_id).where(
                order_lines.c.order_id == order_id
            )
        )
    }
    last = int(
        await conn.scalar(sa.select(orders.c.last_line_no).where(orders.c.id == order_id)) or 0
    )
    for item_id, quantity in sorted(wanted.items()):
        line = existing.get(item_id)
        if line is not None:
            await conn.execute(
                order_lines.update().where(order_lines.c.id == line.id).values(quantity=quantity)
            )
            continue
        last += 1
        await conn.execute(
            order_lines.insert().values(
                order_id=order_id,
                line_no=last,
                item_id=item_id,
                quantity=quantity,
                received=0,
                shipped=0,
            )
        )
    await conn.execute(
        orders.update()
        .where(orders.c.id == order_id)
        .values(last_line_no=last, updated_at=now, updated_by=PLANNER_ACTOR)
    )


async def draft_orders(
    conn: AsyncConnection, plans: Sequence[ItemPlan], settings: ReplenishmentSettings, now: datetime
) -> list[Draft]:
    """Drafts for the plans at or below their reorder point (step 3), one per site and supplier."""
    groups: dict[tuple[str, str | None], list[tuple[ItemPlan, int]]] = defaultdict(list)
    for plan in plans:
        quantity = plan.to_order()
        if quantity > 0:
            groups[(plan.site, plan.supplier)].append((plan, quantity))
    existing = {(row.site, row.partner): row for row in await _planner_drafts(conn)}
    drafts: list[Draft] = []
    for index, ((site, supplier), wanted) in enumerate(sorted(groups.items(), key=str), 1):
        wanted = wanted[:MAX_DRAFT_LINES]
        lines = tuple((plan.sku, quantity) for plan, quantity in wanted)
        found = existing.get((site, supplier))
        if found is not None:
            await _update_draft(conn, found.id, {p.item_id: q for p, q in wanted}, now)
            drafts.append(Draft(found.id, found.number, site, supplier, lines, created=False))
            continue
        body = OrderIn(
            number=await _number(conn, now, index),
            location=await _receiving_location(conn, site, settings.receiving_zone),
            partner=supplier,
            status="draft",
            note="Drafted by the replenishment planner: items projected at or below their "
            "reorder point. Review, then confirm.",
            lines=[LineIn(sku=plan.sku, quantity=quantity) for plan, quantity in wanted],
        )
        view = await create_order(conn, PURCHASE, body, PLANNER_ACTOR, now)
        drafts.append(Draft(view.id, view.number, site, supplier, lines, created=True))
    return drafts


async def suggestion_alerts(conn: AsyncConnection, now: datetime) -> list[AlertSpec]:
    """``reorder_suggested`` for every planner draft still a draft (step 4)."""
    holding: list[AlertSpec] = []
    for row in await _planner_drafts(conn):
        lines = [
            {"sku": sku, "quantity": int(quantity)}
            for sku, quantity in await conn.execute(
                sa.select(items.c.sku, order_lines.c.quantity)
                .join(items, items.c.id == order_lines.c.item_id)
                .where(order_lines.c.order_id == row.id)
                .order_by(order_lines.c.line_no)
            )
        ]
        evidence = {
            "order_id": row.id,
            "number": row.number,
            "site": row.site,
            "supplier": row.partner or "no supplier",
            "lines": len(lines),
            "items": lines[:100],
        }
        holding.append(REORDER_SUGGESTED.raise_(row.number, evidence, site=row.site))
    await reconcile(
        conn,
        kinds={REORDER_SUGGESTED.kind},
        holding=holding,
        now=now,
        reason="the draft was confirmed or cancelled",
    )
    return holding


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
