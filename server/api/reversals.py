"""``POST /api/v1/reversals``: cancel a ledger row with a new one (nothing is edited)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from server.api.auth import Context, Operator
from server.api.operation_responses import OPERATION_RESPONSES, caller_of, respond
from server.commands.operation_models import OperationResult, ReversalRequest
from server.commands.operations import reverse
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["stock operations"])


@router.post(
    "/reversals",
    response_model=OperationResult,
    status_code=status.HTTP_201_CREATED,
    responses=OPERATION_RESPONSES,
)
async def post_reversal(
    context: Context, principal: Operator, request: ReversalRequest, response: Response
) -> OperationResult:
    """Append a row of the same kind with the locations swapped and ``reverses`` set.

    A reversal is not reversed, a row is reversed once, and a unit's rows newest first.
    """
    async with context.store.begin(f"reversing movement {request.movement_id}") as conn:
        result = await reverse(
            conn,
            request,
            caller_of(principal),
            known_locations=context.store.known_locations,
            now=now_utc(),
            policy=context.policy,
        )
    return respond(result, response)
