"""Unit costs (``/api/v1/items/{sku}/costs``, ``/api/v1/receipt-costs``) and the master-data
audit trail (``/api/v1/audit/masterdata``).

Costs are exact decimals and travel as decimal strings (``"12.500000"``). Standard costs
for every site need an admin key for all sites; a site's own, an admin key for that site.
Receipt costs need an operator key for the receipt's site. The audit trail is read by
viewers (restricted keys too: master data has no site of its own).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel

from server.api.auth import Admin, Context, Operator, Viewer, check_site
from server.api.cursor import MAX_ROW_ID
from server.api.history import bounded
from server.api.params import DEFAULT_PAGE, Limit
from server.commands.audit import ChangeFilter, list_changes
from server.commands.costs import (
    ReceiptCostRequest,
    ReceiptCostView,
    StandardCostRequest,
    StandardCostView,
    record_receipt_cost,
    set_standard_cost,
    standard_costs,
)
from server.commands.masterdata import SKU_PATTERN
from server.errors import Forbidden
from server.store.schema.costs import MAX_KEY, Entity
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["costs and audit"])

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, min_length=1, max_length=64)]
REFUSALS: dict[int | str, dict[str, str]] = {
    403: {"description": "Outside the key's sites."},
    404: {"description": "No such item or movement."},
    409: {"description": "The movement does not bring stock in from outside."},
    422: {"description": "A field is invalid."},
}


class StandardCostPage(BaseModel):
    items: list[StandardCostView]
    """Newest recorded first."""


@router.get("/items/{sku}/costs", response_model=StandardCostPage, responses=REFUSALS)
async def get_standard_costs(context: Context, _: Viewer, sku: SkuPath) -> StandardCostPage:
    """Every standard cost recorded for the item, with who recorded it and when."""
    async with context.store.read("reading standard costs") as conn:
        return StandardCostPage(items=await standard_costs(conn, sku))


@router.post(
    "/items/{sku}/costs",
    response_model=StandardCostView,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def post_standard_cost(
    context: Context, principal: Admin, sku: SkuPath, body: StandardCostRequest
) -> StandardCostView:
    """Record a standard cost from ``effective_from`` (default now), for one site or all."""
    if body.site is None and principal.sites:
        raise Forbidden("a standard cost for every site needs a key for every site")
    if body.site is not None:
        check_site(principal, body.site)
    if body.effective_from is not None:
        body = body.model_copy(
            update={"effective_from": bounded(body.effective_from, "effective_from")}
        )
    async with context.store.begin(f"recording a standard cost of {sku}") as conn:
        return await set_standard_cost(conn, sku, body, principal.name, now_utc())


@router.post(
    "/receipt-costs",
    response_model=ReceiptCostView,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def post_receipt_cost(
    context: Context, principal: Operator, body: ReceiptCostRequest
) -> ReceiptCostView:
    """Record the unit cost of a receipt (a ledger row bringing stock into a site)."""
    async with context.store.begin(f"recording the cost of movement {body.movement_id}") as conn:
        return await record_receipt_cost(conn, body, principal.name, principal.sites, now_utc())


class ChangeView(BaseModel):
    id: int
    entity: Entity
    key: str
    """The SKU, category code, location id, read point id; for costs ``<sku>``,
    ``<sku>@<site>`` or ``movement:<id>``; for reorder settings the SKU."""
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    actor: str
    changed_at: datetime


class ChangePage(BaseModel):
    items: list[ChangeView]
    """Newest first."""
    next_cursor: str | None
    """Pass as ``cursor`` for older changes; null on the last page."""


@router.get("/audit/masterdata", response_model=ChangePage)
async def get_masterdata_changes(
    context: Context,
    _: Viewer,
    entity: Entity | None = None,
    key: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY)] = None,
    actor: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    since: Annotated[datetime | None, Query(description="Inclusive; no offset: UTC.")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive; no offset: UTC.")] = None,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}$")] = None,
    limit: Limit = DEFAULT_PAGE,
) -> ChangePage:
    """Who changed which master data when, with the values before and after."""
    where = ChangeFilter(
        entity=entity,
        key=key,
        actor=actor,
        since=bounded(since, "since"),
        until=bounded(until, "until"),
    )
    before = int(cursor) if cursor is not None else None
    if before is not None and before > MAX_ROW_ID:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "bad cursor: not one this server issued")
    async with context.store.read("reading the master-data audit trail") as conn:
        rows = await list_changes(conn, where, before, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return ChangePage(
        items=[ChangeView.model_validate(row) for row in rows],
        next_cursor=str(rows[-1]["id"]) if more else None,
    )
