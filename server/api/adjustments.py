"""``POST /api/v1/adjustments``: stock found, lost, stolen, damaged, expired or corrected."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from server.api.auth import Context, Operator
from server.api.operation_responses import OPERATION_RESPONSES, caller_of, respond
from server.commands.operation_models import AdjustmentRequest, OperationResult
from server.commands.operations import adjust
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["stock operations"])


@router.post(
    "/adjustments",
    response_model=OperationResult,
    status_code=status.HTTP_201_CREATED,
    responses=OPERATION_RESPONSES,
)
async def post_adjustment(
    context: Context, principal: Operator, request: AdjustmentRequest, response: Response
) -> OperationResult:
    """Record an adjustment with a reason code as a ledger row (operator or admin).

    ``quantity`` is the signed change; a unit (``epc``) changes by one and its status
    follows (out: ``missing``; found: ``in_stock``). See the README for every rule.
    """
    async with context.store.begin("recording an adjustment") as conn:
        result = await adjust(
            conn,
            request,
            caller_of(principal),
            known_locations=context.store.known_locations,
            now=now_utc(),
            policy=context.policy,
        )
    return respond(result, response)
