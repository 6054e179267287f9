"""The order routes: the same for every kind of order, built once per kind (``ROUTERS``).

- ``/api/v1/purchase-orders``: goods expected at a location (on order), received at the dock.
- ``/api/v1/sales-orders``: goods allocated at a location, shipped against through the dock.
- ``/api/v1/transfer-orders``: goods shipped from one site to another, in transit on the road.

Each has: list (newest first, cursor pagination), create (``POST``, with a body of the kind's
own shape, ``KINDS``), read, change terms (``PATCH``), move along the workflow
(``POST .../status``), add, change and remove lines. Viewers read; operators and admins change;
a key restricted to sites sees and changes only orders of its sites
(``server.commands.orders``).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the create route's body class
# from its signature when the route is added, and ``order_router`` puts the kind's class there.

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.types import DecoratedCallable
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
from server.rules.orders import PURCHASE, SALES, TRANSFER, OrderKindSpec, OrderStatus
from server.store.schema.orders import ORDER_NUMBER_PATTERN
from wire.models import now_utc

MAX_ID = 2**63 - 1
MAX_LINE_NO = 2**31 - 1
SITE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
PARTNER_PATTERN = r"^[^\x00-\x1f\x7f]+$"

KINDS: tuple[tuple[OrderKindSpec, type[OrderIn]], ...] = (
    (PURCHASE, OrderIn),
    (SALES, OrderIn),
    (TRANSFER, TransferOrderIn),
)
"""Each kind of order with the body that creates one, in the order OpenAPI lists them."""

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


def _by(principal: Principal) -> tuple[str, datetime, frozenset[str]]:
    """The actor, the time and the caller's sites: the last arguments of an order command."""
    return principal.name, now_utc(), principal.sites


def order_router(spec: OrderKindSpec, body: type[OrderIn]) -> APIRouter:
    """The routes of one kind of order, whose create route takes ``body``."""
    router = APIRouter(prefix=f"/api/v1/{spec.path}", tags=[f"{spec.title}s"])
    kind, title = spec.kind, spec.title

    def change_route(
        method: str, path: str, name: str, description: str, status_code: int | None = None
    ) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """A route that changes an order and answers with it (or with one of ``REFUSALS``)."""
        return router.api_route(
            path,
            methods=[method],
            response_model=OrderView,
            status_code=status_code,
            responses=REFUSALS,
            name=name,
            description=description,
        )

    @router.get(
        "",
        response_model=OrderPage,
        name=f"list_{kind}_orders",
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
        name=f"get_{kind}_order",
        description=f"A {title} with its lines: quantity, received, shipped, short, over.",
    )
    async def get_route(context: Context, principal: Viewer, order_id: OrderId) -> OrderView:
        async with context.store.read(f"reading {title} {order_id}") as conn:
            return await get_order(conn, spec, order_id, principal.sites)

    @change_route(
        "PATCH",
        "/{order_id}",
        f"change_{kind}_order",
        f"Change a draft or open {title}'s terms; where it goes only while it is a draft.",
    )
    async def patch_route(
        context: Context, principal: Operator, order_id: OrderId, changes: OrderChanges
    ) -> OrderView:
        async with context.store.begin(f"changing {title} {order_id}") as conn:
            return await change_order(conn, spec, order_id, changes, *_by(principal))

    @change_route(
        "POST",
        "/{order_id}/status",
        f"change_{kind}_order_status",
        f"Move a {title} along draft -> open -> closed (or cancelled). Closing a purchase "
        "order reconciles it: short and over lines raise alerts.",
    )
    async def status_route(
        context: Context, principal: Operator, order_id: OrderId, change: StatusChange
    ) -> OrderView:
        async with context.store.begin(f"changing the status of {title} {order_id}") as conn:
            return await change_status(conn, spec, order_id, change.status, *_by(principal))

    @change_route(
        "POST",
        "/{order_id}/lines",
        f"add_{kind}_order_line",
        f"Add a line to a draft or open {title}.",
        status.HTTP_201_CREATED,
    )
    async def add_line_route(
        context: Context, principal: Operator, order_id: OrderId, line: LineIn
    ) -> OrderView:
        async with context.store.begin(f"adding a line to {title} {order_id}") as conn:
            return await add_line(conn, spec, order_id, line, *_by(principal))

    @change_route(
        "PUT",
        "/{order_id}/lines/{line_no}",
        f"change_{kind}_order_line",
        f"Set the quantity of a line of a draft or open {title}.",
    )
    async def change_line_route(
        context: Context,
        principal: Operator,
        order_id: OrderId,
        line_no: LineNo,
        change: LineQuantity,
    ) -> OrderView:
        doing = f"changing line {line_no} of {title} {order_id}"
        async with context.store.begin(doing) as conn:
            return await change_line(
                conn, spec, order_id, line_no, change.quantity, *_by(principal)
            )

    @change_route(
        "DELETE",
        "/{order_id}/lines/{line_no}",
        f"remove_{kind}_order_line",
        f"Remove a line of a draft or open {title} that nothing was received or shipped on.",
    )
    async def remove_line_route(
        context: Context, principal: Operator, order_id: OrderId, line_no: LineNo
    ) -> OrderView:
        doing = f"removing line {line_no} of {title} {order_id}"
        async with context.store.begin(doing) as conn:
            return await remove_line(conn, spec, order_id, line_no, *_by(principal))

    # Last, as it always was: OpenAPI lists a path's methods in the order they were added.
    @change_route(
        "POST",
        "",
        f"create_{kind}_order",
        f"Create a {title} with its lines, as a draft or open at once.",
        status.HTTP_201_CREATED,
    )
    async def create_route(context: Context, principal: Operator, body: OrderIn) -> OrderView:
        destination = body.destination if isinstance(body, TransferOrderIn) else None
        check_locations(principal, body.location, destination)
        async with context.store.begin(f"creating {title} {body.number}") as conn:
            return await create_order(conn, spec, body, principal.name, now_utc())

    # The kind's own body class (``OrderIn`` or a subclass), where FastAPI looks for it.
    create_route.__annotations__["body"] = body
    return router


ROUTERS = [order_router(spec, body) for spec, body in KINDS]
"""One router a kind of order, in ``KINDS``' order."""
