"""Draft purchase orders and their alerts: the planner's steps 3 and 4
(``server.replenishment.planner``).

The plans at or below their reorder point become drafts, one per site and supplier: an
existing planner draft for that site and supplier is updated (its lines set to the new
quantities) rather than a second one made. Drafts are never opened here: an operator
confirms them (``POST /api/v1/replenishment/drafts/{id}/confirm``) or edits or cancels them
through the purchase order API. ``reorder_suggested`` (subject: the draft's number,
evidence: its id and lines) is kept open for each planner draft still a draft, so
confirming or cancelling one clears its alert.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import reconcile
from server.commands.order_models import LineIn, OrderIn
from server.commands.orders import create_order
from server.config.replenishment import ReplenishmentSettings
from server.replenishment.plans import ItemPlan
from server.rules.alerts import REORDER_SUGGESTED
from server.rules.model import AlertSpec
from server.rules.orders import PURCHASE
from server.store.schema.core import items, locations
from server.store.schema.orders import order_lines, orders

PLANNER_ACTOR = "replenishment"
"""``created_by`` of the drafts the planner makes (and finds again)."""
MAX_DRAFT_LINES = 500


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
