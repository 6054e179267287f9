"""``/api/v1/purchase-orders``: goods expected at a location (on order), received at the dock.

Purchase orders: the list, read and change routes come from ``server.api.order_routes``; this
module adds the create route, whose body is this kind's (``server.commands.order_models.OrderIn``).
"""

from __future__ import annotations

from fastapi import status

from server.api.auth import Context, Operator
from server.api.order_routes import REFUSALS, create, order_router
from server.commands.order_models import OrderIn, OrderView
from server.rules.orders import PURCHASE

router = order_router(PURCHASE)


@router.post(
    "",
    response_model=OrderView,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
    name="create_purchase_order",
)
async def create_purchase_order(context: Context, principal: Operator, body: OrderIn) -> OrderView:
    """Create a purchase order with its lines, as a draft or open at once."""
    return await create(context, principal, PURCHASE, body)
