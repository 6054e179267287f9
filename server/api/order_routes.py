"""The routes every kind of order has, built once per kind (``order_router``).

``/api/v1/{purchase,sales,transfer}-orders``: list (newest first, cursor pagination), read,
change terms (PATCH), move along the workflow (``POST .../status``), add, change and remove
lines. Creating an order takes a body of the kind's own shape, so each kind's module adds
its ``POST`` with ``create``. Viewers read; operators and admins change; a key restricted to
sites sees and changes only orders of its sites (``server.commands.orders``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel

from server.api.auth import Context, Operator, Viewer, check_locations, check_site
from server.api.context import Principal
from server.api.keyset import decode_key, encode_key
from server.api.params import DEFAULT_PAGE, Limit
from server.commands.masterdata import SKU_PATTERN, normalize_gtin
from server.commands.order_lines import add_line, change_line, remove_line
from server.commands.order_models import (
    LineIn,
    LineQuantity,
    OrderChanges,
    OrderIn,
    OrderSummary,
    OrderView,
    StatusChange,
    TransferOrderIn,
)
from server.commands.orders import change_order, change_status, create_order
from server.queries.orders import OrderFilter, get_order, item_id_of, list_orders
from server.rules.orders import OrderKindSpec, OrderStatus
from server.store.schema.orders import ORDER_NUMBER_PATTERN
from wire.models import now_utc

MAX_ID = 2**63 - 1
MAX_LINE_NO = 2**31 - 1
SITE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
PARTNER_PATTERN = r"^[^\x00-\x1f\x7f]+$"

REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The order or a location is outside the key's sites."},
    404: {"description": "No such order (or line) of this kind."},
    409: {"description": "The order's status does not allow this; the reason says why."},
    422: {"description": "A field is wrong; the reason names it."},
}

OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]
LineNo = Annotated[int, Path(ge=1, le=MAX_LINE_NO)]


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page; null on the last page."""


def _before(cursor: str | None) -> int | None:
    key = decode_key(cursor)
    if key is None:
        return None
    if not key.isdigit() or not 0 < int(key) <= MAX_ID:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "bad cursor: not one this server issued")
    return int(key)


async def create(
    context: Context, principal: Principal, spec: OrderKindSpec, body: OrderIn
) -> OrderView:
    """Create an order of ``spec``'s kind (the body of each kind's ``POST``)."""
    destination = body.destination if isinstance(body, TransferOrderIn) else None
    check_locations(principal, body.location, destination)
    async with context.store.begin(f"creating {spec.title} {body.number}") as conn:
        return await create_order(conn, spec, body, principal.name, now_utc())


def order_router(spec: OrderKindSpec) -> APIRouter:
    """The list, read and change routes of one kind of order."""
    router = APIRouter(prefix=f"/api/v1/{spec.path}", tags=[f"{spec.title}s"])
    title = spec.title

    @router.get(
        "",
        response_model=OrderPage,
        name=f"list_{spec.kind}_orders",
        description=f"{title.capitalize()}s, newest first, without their lines.",
    )
    async def list_route(
        context: Context,
        principal: Viewer,
        status_: Annotated[
            OrderStatus | None, Query(alias="status", description="draft, open, closed, cancelled.")
        ] = None,
        site: Annotated[
            str | None,
            Query(pattern=SITE_PATTERN, description="Orders from or to this site."),
        ] = None,
        number: Annotated[str | None, Query(pattern=ORDER_NUMBER_PATTERN)] = None,
        partner: Annotated[
            str | None, Query(min_length=1, max_length=256, pattern=PARTNER_PATTERN)
        ] = None,
        gtin: Annotated[
            str | None,
            Query(pattern=r"^(\d{8}|\d{12}|\d{13}|\d{14})$", description="Orders of this item."),
        ] = None,
        sku: Annotated[
            str | None,
            Query(pattern=SKU_PATTERN, max_length=64, description="Orders of this item."),
        ] = None,
        cursor: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        limit: Limit = DEFAULT_PAGE,
    ) -> OrderPage:
        if site is not None:
            check_site(principal, site)
        before = _before(cursor)
        async with context.store.read(f"listing {title}s") as conn:
            item_id: int | None = None
            if gtin is not None or sku is not None:
                try:
                    normalized = normalize_gtin(gtin) if gtin is not None else None
                except ValueError as err:
                    raise HTTPException(status.HTTP_400_BAD_REQUEST, f"gtin: {err}") from err
                item_id = await item_id_of(conn, normalized, sku)
                if item_id is None:
                    return OrderPage(items=[], next_cursor=None)
            where = OrderFilter(
                status=status_,
                site=site,
                number=number,
                partner=partner,
                item_id=item_id,
                sites=principal.sites,
            )
            found, more = await list_orders(conn, spec, where, before, limit)
        next_cursor = encode_key(str(found[-1].id)) if more and found else None
        return OrderPage(items=found, next_cursor=next_cursor)

    @router.get(
        "/{order_id}",
        response_model=OrderView,
        responses=REFUSALS,
        name=f"get_{spec.kind}_order",
        description=f"A {title} with its lines: quantity, received, shipped, short, over.",
    )
    async def get_route(context: Context, principal: Viewer, order_id: OrderId) -> OrderView:
        async with context.store.read(f"reading {title} {order_id}") as conn:
            return await get_order(conn, spec, order_id, principal.sites)

    @router.patch(
        "/{order_id}",
        response_model=OrderView,
        responses=REFUSALS,
        name=f"change_{spec.kind}_order",
        description=(
            f"Change a draft or open {title}'s terms; where it goes only while it is a draft."
        ),
    )
    async def patch_route(
        context: Context, principal: Operator, order_id: OrderId, changes: OrderChanges
    ) -> OrderView:
        async with context.store.begin(f"changing {title} {order_id}") as conn:
            return await change_order(
                conn, spec, order_id, changes, principal.name, now_utc(), principal.sites
            )

    @router.post(
        "/{order_id}/status",
        response_model=OrderView,
        responses=REFUSALS,
        name=f"change_{spec.kind}_order_status",
        description=(
            f"Move a {title} along draft -> open -> closed (or cancelled). Closing a purchase "
            "order reconciles it: short and over lines raise alerts."
        ),
    )
    async def status_route(
        context: Context, principal: Operator, order_id: OrderId, change: StatusChange
    ) -> OrderView:
        async with context.store.begin(f"changing the status of {title} {order_id}") as conn:
            return await change_status(
                conn, spec, order_id, change.status, principal.name, now_utc(), principal.sites
            )

    @router.post(
        "/{order_id}/lines",
        response_model=OrderView,
        status_code=status.HTTP_201_CREATED,
        responses=REFUSALS,
        name=f"add_{spec.kind}_order_line",
        description=f"Add a line to a draft or open {title}.",
    )
    async def add_line_route(
        context: Context, principal: Operator, order_id: OrderId, line: LineIn
    ) -> OrderView:
        async with context.store.begin(f"adding a line to {title} {order_id}") as conn:
            return await add_line(
                conn, spec, order_id, line, principal.name, now_utc(), principal.sites
            )

    @router.put(
        "/{order_id}/lines/{line_no}",
        response_model=OrderView,
        responses=REFUSALS,
        name=f"change_{spec.kind}_order_line",
        description=f"Set the quantity of a line of a draft or open {title}.",
    )
    async def change_line_route(
        context: Context,
        principal: Operator,
        order_id: OrderId,
        line_no: LineNo,
        change: LineQuantity,
    ) -> OrderView:
        async with context.store.begin(f"changing line {line_no} of {title} {order_id}") as conn:
            return await change_line(
                conn,
                spec,
                order_id,
                line_no,
                change.quantity,
                principal.name,
                now_utc(),
                principal.sites,
            )

    @router.delete(
        "/{order_id}/lines/{line_no}",
        response_model=OrderView,
        responses=REFUSALS,
        name=f"remove_{spec.kind}_order_line",
        description=(
            f"Remove a line of a draft or open {title} that nothing was received or shipped on."
        ),
    )
    async def remove_line_route(
        context: Context, principal: Operator, order_id: OrderId, line_no: LineNo
    ) -> OrderView:
        async with context.store.begin(f"removing line {line_no} of {title} {order_id}") as conn:
            return await remove_line(
                conn, spec, order_id, line_no, principal.name, now_utc(), principal.sites
            )

    return router
