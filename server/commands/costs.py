"""Unit costs: items' standard costs over time, and costs recorded against receipts.

Both are append-only histories (``server.store.schema.costs``); each entry carries its actor and
the time it was recorded, and is also written to the master-data audit trail
(``server.commands.audit``, entity ``cost``) with the cost in force before it. How the books use
them is in ``server.reports.valuation``.

- A **standard cost** holds for an item from ``effective_from`` (default: when recorded)
  until a newer one, at one site or (no site) at every site without its own. Costs may be
  dated back, so receipts booked before a cost was known can be valued at it; the history
  keeps what was recorded when.
- A **receipt cost** is the unit cost of one ledger row that brought stock into a site
  from no site (a receipt, stock found, a count that found more): an invoice price, or
  the purchase order price. Recording one again replaces it for valuation; the older ones
  stay in the history.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.audit import record_change
from server.commands.masterdata import NAME_PATTERN
from server.config.settings import SiteId
from server.errors import Conflict, Forbidden, NotFound
from server.store.schema.core import items, ledger
from server.store.schema.costs import (
    COST_SCALE,
    MAX_COST_NOTE,
    MAX_UNIT_COST,
    item_costs,
    receipt_costs,
)
from server.store.sites import site_of

UnitCost = Annotated[
    Decimal,
    Field(ge=0, le=MAX_UNIT_COST, max_digits=16, decimal_places=6, description="Per unit."),
]
CostNote = Annotated[str, Field(min_length=1, max_length=MAX_COST_NOTE, pattern=NAME_PATTERN)]


class StandardCostRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_cost: UnitCost
    site: SiteId | None = None
    """Only at this site; none: every site without its own standard cost."""
    effective_from: datetime | None = None
    """From when it holds (no offset means UTC); default: now."""
    note: CostNote | None = None


class StandardCostView(BaseModel):
    id: int
    sku: str
    site: str | None
    unit_cost: Decimal
    effective_from: datetime
    actor: str
    recorded_at: datetime
    note: str | None


class ReceiptCostRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    movement_id: Annotated[int, Field(ge=1, le=2**63 - 1)]
    """The ledger row (``GET /api/v1/movements``'s ``id``)."""
    unit_cost: UnitCost
    note: CostNote | None = None


class ReceiptCostView(BaseModel):
    id: int
    movement_id: int
    sku: str
    site: str
    quantity: int
    unit_cost: Decimal
    actor: str
    recorded_at: datetime
    note: str | None


def _standard_view(row: Any, sku: str) -> StandardCostView:
    return StandardCostView(
        id=int(row.id),
        sku=sku,
        site=row.site,
        unit_cost=row.unit_cost,
        effective_from=row.effective_from,
        actor=row.actor,
        recorded_at=row.recorded_at,
        note=row.note,
    )


async def _item_id(conn: AsyncConnection, sku: str) -> int:
    item_id = await conn.scalar(sa.select(items.c.id).where(items.c.sku == sku))
    if item_id is None:
        raise NotFound(f"no item {sku!r}")
    return int(item_id)


async def standard_costs(conn: AsyncConnection, sku: str) -> list[StandardCostView]:
    """Every standard cost recorded for an item, newest recorded first."""
    item_id = await _item_id(conn, sku)
    rows = await conn.execute(
        sa.select(item_costs)
        .where(item_costs.c.item_id == item_id)
        .order_by(item_costs.c.id.desc())
    )
    return [_standard_view(row, sku) for row in rows]


async def set_standard_cost(
    conn: AsyncConnection, sku: str, request: StandardCostRequest, actor: str, now: datetime
) -> StandardCostView:
    """Record a standard cost (and its audit entry)."""
    item_id = await _item_id(conn, sku)
    cost = item_costs.c
    previous = (
        await conn.execute(
            sa.select(item_costs)
            .where(
                cost.item_id == item_id,
                cost.site.is_(None) if request.site is None else cost.site == request.site,
            )
            .order_by(cost.id.desc())
            .limit(1)
        )
    ).first()
    effective_from = request.effective_from or now
    new_id = await conn.scalar(
        sa.insert(item_costs)
        .values(
            item_id=item_id,
            site=request.site,
            unit_cost=request.unit_cost,
            effective_from=effective_from,
            actor=actor,
            recorded_at=now,
            note=request.note,
        )
        .returning(cost.id)
    )
    view = StandardCostView(
        id=int(new_id or 0),
        sku=sku,
        site=request.site,
        unit_cost=request.unit_cost.quantize(COST_SCALE),
        effective_from=effective_from,
        actor=actor,
        recorded_at=now,
        note=request.note,
    )
    before = _standard_view(previous, sku).model_dump(mode="json") if previous else None
    await record_change(
        conn,
        "cost",
        f"{sku}@{request.site}" if request.site else sku,
        "update" if before is not None else "create",
        before,
        view.model_dump(mode="json"),
        actor,
        now,
    )
    return view


async def record_receipt_cost(
    conn: AsyncConnection,
    request: ReceiptCostRequest,
    actor: str,
    sites: frozenset[str],
    now: datetime,
) -> ReceiptCostView:
    """Record the unit cost of a ledger row that brought stock into a site from no site.

    Raises:
        NotFound: no such ledger row (or it is outside the caller's sites).
        Conflict: the row does not bring stock in from outside (a move, a shipment).
    """
    row = (
        await conn.execute(
            sa.select(ledger.c.to_location, ledger.c.from_location, ledger.c.quantity, items.c.sku)
            .join(items, items.c.id == ledger.c.item_id)
            .where(ledger.c.id == request.movement_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"no movement {request.movement_id}")
    place = row.to_location or row.from_location
    site = site_of(place)
    if sites and site not in sites:
        raise Forbidden(f"movement {request.movement_id} is at site {site!r}, outside this key's")
    if row.from_location is not None or row.to_location is None:
        raise Conflict(
            f"movement {request.movement_id} does not bring stock into a site from outside; "
            "only receipts, stock found and counts that found more take a cost"
        )
    previous = (
        await conn.execute(
            sa.select(receipt_costs)
            .where(receipt_costs.c.ledger_id == request.movement_id)
            .order_by(receipt_costs.c.id.desc())
            .limit(1)
        )
    ).first()
    new_id = await conn.scalar(
        sa.insert(receipt_costs)
        .values(
            ledger_id=request.movement_id,
            unit_cost=request.unit_cost,
            actor=actor,
            recorded_at=now,
            note=request.note,
        )
        .returning(receipt_costs.c.id)
    )
    view = ReceiptCostView(
        id=int(new_id or 0),
        movement_id=request.movement_id,
        sku=row.sku,
        site=site,
        quantity=int(row.quantity),
        unit_cost=request.unit_cost.quantize(COST_SCALE),
        actor=actor,
        recorded_at=now,
        note=request.note,
    )
    before = None
    if previous is not None:
        before = view.model_copy(
            update={
                "id": int(previous.id),
                "unit_cost": previous.unit_cost,
                "actor": previous.actor,
                "recorded_at": previous.recorded_at,
                "note": previous.note,
            }
        ).model_dump(mode="json")
    await record_change(
        conn,
        "cost",
        f"movement:{request.movement_id}",
        "update" if before is not None else "create",
        before,
        view.model_dump(mode="json"),
        actor,
        now,
    )
    return view
