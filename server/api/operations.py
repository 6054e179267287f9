"""``POST /api/v1/{adjustments,transfers,reversals}``: the stock operations people record.

The three routes differ only in their body, the command that records it and their words, so
each is a row of ``OPERATIONS`` and ``router`` is built from the table. Operators and admins
post; a key restricted to sites only for locations of its sites. A route answers 201 with the
ledger rows it appended, or 200 with the first call's rows when its ``request_id`` was sent
before (nothing new is written). The rules are in ``server.commands.operations``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads an endpoint's body class from
# its signature when the route is added, and ``_endpoint`` puts the row's class there.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from server.api.auth import Context, Operator
from server.commands.operation_models import (
    AdjustmentRequest,
    Caller,
    OperationResult,
    ReversalRequest,
    TransferRequest,
)
from server.commands.operations import adjust, reverse, transfer
from server.rules.policy import Policy
from wire.models import now_utc

Request = TypeVar("Request", bound=BaseModel)
Request_contra = TypeVar("Request_contra", bound=BaseModel, contravariant=True)

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A request_id sent before: the rows of the first call."},
    403: {"description": "A location is outside the key's sites."},
    404: {"description": "The movement to reverse does not exist."},
    409: {"description": "The current state forbids it (not in stock, reversed already, ...)."},
    422: {"description": "A field is invalid or names something that does not exist."},
}
"""What every operation route may answer besides 201 (documented in OpenAPI)."""


class Command(Protocol[Request_contra]):
    """How ``server.commands.operations`` records an operation."""

    def __call__(
        self,
        conn: AsyncConnection,
        request: Request_contra,
        caller: Caller,
        *,
        known_locations: set[str],
        now: datetime,
        policy: Policy,
    ) -> Awaitable[OperationResult]: ...


@dataclass(frozen=True, slots=True)
class Operation(Generic[Request]):
    """One stock operation's route.

    Args:
        path: under ``/api/v1``.
        name: the route's name; its OpenAPI operation id and summary derive from it.
        body: the request's class.
        command: what records it.
        doing: what the transaction does, for the store's errors and logs.
        description: the route's description in OpenAPI.
    """

    path: str
    name: str
    body: type[Request]
    command: Command[Request]
    doing: Callable[[Request], str]
    description: str


OPERATIONS: tuple[Operation[Any], ...] = (
    Operation(
        path="/adjustments",
        name="post_adjustment",
        body=AdjustmentRequest,
        command=adjust,
        doing=lambda _: "recording an adjustment",
        description=(
            "Record an adjustment with a reason code as a ledger row (operator or admin).\n\n"
            "``quantity`` is the signed change; a unit (``epc``) changes by one and its status\n"
            "follows (out: ``missing``; found: ``in_stock``). See the README for every rule."
        ),
    ),
    Operation(
        path="/transfers",
        name="post_transfer",
        body=TransferRequest,
        command=transfer,
        doing=lambda _: "recording a transfer",
        description=(
            "Record a transfer of a quantity, or of one unit, as a ledger row (operator or admin)."
        ),
    ),
    Operation(
        path="/reversals",
        name="post_reversal",
        body=ReversalRequest,
        command=reverse,
        doing=lambda request: f"reversing movement {request.movement_id}",
        description=(
            "Append a row of the same kind with the locations swapped and ``reverses`` set.\n\n"
            "A reversal is not reversed, a row is reversed once, and a unit's rows newest first."
        ),
    ),
)
"""The stock operation routes, in the order OpenAPI lists them."""


def _endpoint(operation: Operation[Request]) -> Callable[..., Awaitable[OperationResult]]:
    async def endpoint(
        context: Context, principal: Operator, request: Request, response: Response
    ) -> OperationResult:
        async with context.store.begin(operation.doing(request)) as conn:
            result = await operation.command(
                conn,
                request,
                Caller(name=principal.name, sites=principal.sites),
                known_locations=context.store.known_locations,
                now=now_utc(),
                policy=context.policy,
            )
        if result.replayed:
            response.status_code = status.HTTP_200_OK
        return result

    # ``Request`` is a type variable; FastAPI finds the body's class in the annotation.
    endpoint.__annotations__["request"] = operation.body
    return endpoint


def _router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["stock operations"])
    for operation in OPERATIONS:
        router.add_api_route(
            operation.path,
            _endpoint(operation),
            methods=["POST"],
            response_model=OperationResult,
            status_code=status.HTTP_201_CREATED,
            responses=RESPONSES,
            name=operation.name,
            description=operation.description,
        )
    return router


router = _router()
