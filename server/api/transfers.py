"""``POST /api/v1/transfers``: stock moved between locations, also between sites."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from server.api.auth import Context, Operator
from server.api.operation_responses import OPERATION_RESPONSES, caller_of, respond
from server.commands.operation_models import OperationResult, TransferRequest
from server.commands.operations import transfer
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["stock operations"])


@router.post(
    "/transfers",
    response_model=OperationResult,
    status_code=status.HTTP_201_CREATED,
    responses=OPERATION_RESPONSES,
)
async def post_transfer(
    context: Context, principal: Operator, request: TransferRequest, response: Response
) -> OperationResult:
    """Record a transfer of a quantity, or of one unit, as a ledger row (operator or admin)."""
    async with context.store.begin("recording a transfer") as conn:
        result = await transfer(
            conn,
            request,
            caller_of(principal),
            known_locations=context.store.known_locations,
            now=now_utc(),
            policy=context.policy,
        )
    return respond(result, response)
