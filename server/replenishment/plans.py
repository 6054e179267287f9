"""Reorder points per item and site: the planner's steps 1 and 2 (``server.replenishment.planner``).

For each (item, site) planned: its daily demand and the lead times measured
(``server.replenishment.history``), its replenishment settings and manual reorder values,
its stock position (on hand from ``balances``; on order, in transit and allocated from
``order_positions``) and its A/B/C class at the site by demand volume, turned into its
figures (``server.replenishment.method``) and stored in ``reorder_plans`` with every input,
so that the API can explain each figure. A manual ``reorder_point`` / ``reorder_quantity``
in the item master wins over the computed one (both are kept).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.replenishment import ReplenishmentSettings
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
from server.rules.policy import TRANSIT_SITE
from server.store.dialect import in_chunks
from server.store.schema.core import balances, items
from server.store.schema.orders import order_positions
from server.store.schema.supply import reorder_plans, replenishment_settings
from server.store.sites import site_of


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


async def _positions(
    conn: AsyncConnection, item_ids: Sequence[int]
) -> dict[tuple[int, str], Position]:
    totals: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for chunk in in_chunks(item_ids):
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
    for chunk in in_chunks(ids):
        for row in await conn.execute(
            sa.select(
                items.c.id,
                items.c.sku,
                items.c.gtin,
                items.c.reorder_point,
                items.c.reorder_quantity,
            ).where(items.c.id.in_(chunk))
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
