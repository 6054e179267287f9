"""``/api/v1/replenishment``: computed reorder points with their reasons, on-demand runs,
per-item replenishment settings, and the confirmation of the planner's draft orders.

- ``GET /replenishment/plans`` (viewer; ``site``, ``sku``, ``below`` = only items at or
  below their reorder point; keyset pages by site and SKU): each item's reorder point,
  order quantity, safety stock and every input (``d_bar``, ``sigma_d``, ``L``,
  ``sigma_L``, ``z``, window, service level, ABC class, demand method, lead-time source),
  whether a manual value won, and the position (on hand + on order + in transit -
  allocated) when it was computed.
- ``POST /replenishment/run`` (operator for all sites): plan now; returns what it did.
- ``GET|PUT /replenishment/settings/{sku}`` (viewer | admin for all sites): supplier,
  service level, method (``order_up_to`` or ``eoq``), minimum order, pack size, order and
  holding cost, lead time to fall back on.
- ``POST /replenishment/drafts/{order_id}/confirm`` (operator of the order's site): opens
  the draft purchase order (it becomes on order; its ``placed_at`` starts the lead time)
  and clears its ``reorder_suggested``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, cast

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from server.alerts.store import clear_alert
from server.api.auth import Context, GlobalAdmin, Operator, Viewer, check_site, require
from server.api.context import Principal
from server.api.keyset import MAX_KEY_CURSOR, decode_key, encode_key
from server.api.params import DEFAULT_PAGE, Limit
from server.commands.audit import record_change, snapshot
from server.commands.masterdata import SKU_PATTERN
from server.commands.order_models import OrderView
from server.commands.orders import change_status
from server.config.replenishment import ReplenishmentSettings
from server.replenishment.drafts import Draft
from server.replenishment.planner import run_planner, save_settings
from server.rules.alerts import REORDER_SUGGESTED
from server.rules.orders import PURCHASE
from server.store.schema.core import items
from server.store.schema.orders import orders
from server.store.schema.supply import reorder_plans, replenishment_settings
from wire.models import now_utc

router = APIRouter(prefix="/api/v1/replenishment", tags=["replenishment"])
SITE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
PlannerOperator = Annotated[Principal, Depends(require("operator", all_sites=True))]


def _settings(request: Request) -> ReplenishmentSettings:
    return cast(ReplenishmentSettings, request.app.state.replenishment)


class PlanView(BaseModel):
    """One item's plan at one site, and why."""

    sku: str
    gtin: str | None
    site: str
    reorder_point: int
    order_quantity: int
    safety_stock: float
    source: str
    """``computed``, or ``manual`` when the item master's reorder point won."""
    computed_at: datetime
    figures: dict[str, Any]
    """Every input and result: ``computed`` (d_bar, sigma_d, L, sigma_L, z, window_days,
    service_level, demand, lead_time, ...), ``manual``, ``abc_class``, ``supplier``,
    ``terms``, ``position`` (with ``projected`` and ``projected_at_lead_time``) and
    ``to_order``."""


class PlanPage(BaseModel):
    items: list[PlanView]
    next_cursor: str | None


@router.get("/plans", response_model=PlanPage)
async def get_plans(
    context: Context,
    principal: Viewer,
    site: Annotated[str | None, Query(pattern=SITE_PATTERN)] = None,
    sku: Annotated[str | None, Query(pattern=SKU_PATTERN, max_length=64)] = None,
    below: Annotated[
        bool, Query(description="Only items at or below their reorder point.")
    ] = False,
    cursor: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY_CURSOR)] = None,
    limit: Limit = DEFAULT_PAGE,
) -> PlanPage:
    """The planner's latest figures per item and site, each with its reasons."""
    if site is not None:
        check_site(principal, site)
    query = (
        sa.select(
            items.c.sku,
            items.c.gtin,
            reorder_plans.c.site,
            reorder_plans.c.reorder_point,
            reorder_plans.c.order_quantity,
            reorder_plans.c.safety_stock,
            reorder_plans.c.computed_at,
            reorder_plans.c.figures,
        )
        .join(items, items.c.id == reorder_plans.c.item_id)
        .order_by(reorder_plans.c.site, items.c.sku)
    )
    if site is not None:
        query = query.where(reorder_plans.c.site == site)
    if principal.sites:
        query = query.where(reorder_plans.c.site.in_(sorted(principal.sites)))
    if sku is not None:
        query = query.where(items.c.sku == sku)
    if cursor is not None:
        after_site, _, after_sku = (decode_key(cursor) or "").partition("\n")
        if not after_sku:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "bad cursor: not one this server issued"
            )
        query = query.where(
            sa.tuple_(reorder_plans.c.site, items.c.sku) > sa.tuple_(after_site, after_sku)
        )
    found: list[PlanView] = []
    more = False
    async with context.store.read("listing replenishment plans") as conn:
        # ``below`` is judged on the stored figures: read on until the page is full.
        result = await conn.stream(query)
        async for row in result:
            figures = dict(row.figures)
            if below and not figures.get("to_order"):
                continue
            if len(found) == limit:
                more = True
                break
            found.append(
                PlanView(
                    sku=row.sku,
                    gtin=row.gtin,
                    site=row.site,
                    reorder_point=row.reorder_point,
                    order_quantity=row.order_quantity,
                    safety_stock=row.safety_stock,
                    source=str(figures.get("source", "computed")),
                    computed_at=row.computed_at,
                    figures=figures,
                )
            )
        await result.close()
    next_cursor = encode_key(f"{found[-1].site}\n{found[-1].sku}") if more and found else None
    return PlanPage(items=found, next_cursor=next_cursor)


class DraftView(BaseModel):
    order_id: int
    number: str
    site: str
    supplier: str | None
    lines: list[tuple[str, int]]
    """(SKU, quantity)."""
    created: bool
    """False: an existing planner draft for this site and supplier was updated."""


class RunView(BaseModel):
    at: datetime
    plans: int
    """(Item, site) pairs planned."""
    suggested: int
    """Of those, at or below their reorder point."""
    drafts: list[DraftView]


def _draft(draft: Draft) -> DraftView:
    return DraftView(
        order_id=draft.order_id,
        number=draft.number,
        site=draft.site,
        supplier=draft.supplier,
        lines=list(draft.lines),
        created=draft.created,
    )


@router.post("/run", response_model=RunView)
async def run_now(request: Request, context: Context, principal: PlannerOperator) -> RunView:
    """Recompute every reorder point now and draft purchase orders for what is due."""
    result = await run_planner(context.store, _settings(request), scheduled=False, now=now_utc())
    if result is None:  # cannot happen unscheduled: the claim waits for a run in progress
        raise HTTPException(status.HTTP_409_CONFLICT, "a planner run is in progress; retry")
    return RunView(
        at=result.at,
        plans=result.plans,
        suggested=result.suggested,
        drafts=[_draft(draft) for draft in result.drafts],
    )


class ItemSettings(BaseModel):
    """An item's replenishment settings; every field optional (``[replenishment]`` fills in)."""

    model_config = ConfigDict(extra="forbid")

    supplier: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    service_level: float | None = Field(default=None, gt=0.5, lt=1)
    method: Literal["order_up_to", "eoq"] | None = None
    min_order: int | None = Field(default=None, ge=1, le=10**9)
    pack_size: int | None = Field(default=None, ge=1, le=10**9)
    order_cost: float | None = Field(default=None, gt=0, le=1e9)
    holding_cost: float | None = Field(default=None, gt=0, le=1e9)
    """Per unit and year."""
    lead_time_days: float | None = Field(default=None, gt=0, le=365)
    lead_time_sd_days: float | None = Field(default=None, ge=0, le=365)


SettingsSku = Annotated[str, Path(pattern=SKU_PATTERN, max_length=64)]


async def _item_id(conn: Any, sku: str) -> int:
    item_id = await conn.scalar(sa.select(items.c.id).where(items.c.sku == sku))
    if item_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no item {sku!r}")
    return int(item_id)


@router.get("/settings/{sku}", response_model=ItemSettings)
async def get_item_settings(context: Context, principal: Viewer, sku: SettingsSku) -> ItemSettings:
    """The item's replenishment settings (all null: the defaults apply)."""
    async with context.store.read("reading replenishment settings") as conn:
        item_id = await _item_id(conn, sku)
        return await _settings_of(conn, item_id) or ItemSettings()


async def _settings_of(conn: Any, item_id: int) -> ItemSettings | None:
    row = (
        await conn.execute(
            sa.select(replenishment_settings).where(replenishment_settings.c.item_id == item_id)
        )
    ).first()
    if row is None:
        return None
    values = {key: row._mapping[key] for key in ItemSettings.model_fields}
    return ItemSettings.model_validate(values)


@router.put("/settings/{sku}", response_model=ItemSettings)
async def put_item_settings(
    context: Context, principal: GlobalAdmin, sku: SettingsSku, body: ItemSettings
) -> ItemSettings:
    """Replace the item's replenishment settings (the next run uses them)."""
    now = now_utc()
    async with context.store.begin("saving replenishment settings") as conn:
        item_id = await _item_id(conn, sku)
        before = await _settings_of(conn, item_id)
        await save_settings(conn, item_id, body.model_dump(), now)
        await record_change(
            conn,
            "reorder_settings",
            sku,
            "update" if before is not None else "create",
            snapshot(before),
            snapshot(body),
            principal.name,
            now,
        )
    return body


@router.post(
    "/drafts/{order_id}/confirm",
    response_model=OrderView,
    responses={
        404: {"description": "No such purchase order."},
        409: {"description": "The order is not a draft."},
    },
)
async def confirm_draft(
    context: Context,
    principal: Operator,
    order_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> OrderView:
    """Open a draft purchase order the planner suggested: it is placed with the supplier."""
    now = now_utc()
    async with context.store.begin(f"confirming draft purchase order {order_id}") as conn:
        found = (
            await conn.execute(
                sa.select(orders.c.status, orders.c.number, orders.c.site).where(
                    orders.c.id == order_id, orders.c.kind == "purchase"
                )
            )
        ).first()
        if found is None or not principal.allows(found.site):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no purchase order {order_id}")
        if found.status != "draft":
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"purchase order {found.number} is {found.status}, not a draft",
            )
        view = await change_status(
            conn, PURCHASE, order_id, "open", principal.name, now, principal.sites
        )
        await clear_alert(
            conn, REORDER_SUGGESTED.kind, found.number, reason="draft confirmed", now=now
        )
    return view
