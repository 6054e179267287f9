"""``/api/v1/transfer-orders``: goods shipped from one site to another, in transit on the road.

Transfer orders: the list, read and change routes come from ``server.api.order_routes``; this
module adds the create route, whose body is this kind's
(``server.commands.order_models.TransferOrderIn``).
"""

from __future__ import annotations

from fastapi import status

from server.api.auth import Context, Operator
from server.api.order_routes import REFUSALS, create, order_router
from server.commands.order_models import OrderView, TransferOrderIn
from server.rules.orders import TRANSFER

router = order_router(TRANSFER)


@router.post(
    "",
    response_model=OrderView,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
    name="create_transfer_order",
)
async def create_transfer_order(
    context: Context, principal: Operator, body: TransferOrderIn
) -> OrderView:
    """Create a transfer order with its lines, as a draft or open at once."""
    return await create(context, principal, TRANSFER, body)
