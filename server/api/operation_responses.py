"""What the stock operation routes share: the caller, the status of a replay, the refusals."""

from __future__ import annotations

from fastapi import Response, status

from server.api.context import Principal
from server.commands.operation_models import Caller, OperationResult

OPERATION_RESPONSES: dict[int | str, dict[str, str]] = {
    200: {"description": "A request_id sent before: the rows of the first call."},
    403: {"description": "A location is outside the key's sites."},
    404: {"description": "The movement to reverse does not exist."},
    409: {"description": "The current state forbids it (not in stock, reversed already, ...)."},
    422: {"description": "A field is invalid or names something that does not exist."},
}


def caller_of(principal: Principal) -> Caller:
    return Caller(name=principal.name, sites=principal.sites)


def respond(result: OperationResult, response: Response) -> OperationResult:
    """201 for new rows; 200 when the request_id was seen before (nothing new was written)."""
    if result.replayed:
        response.status_code = status.HTTP_200_OK
    return result
