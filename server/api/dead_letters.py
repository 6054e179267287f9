"""``GET /api/v1/dead-letters``: what ingest could not use, newest first (operator+)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from server.api.auth import Context, Operator
from server.api.params import DEFAULT_PAGE, Limit
from server.queries.lists import list_dead_letters
from server.queries.views import DeadLetterView

router = APIRouter(prefix="/api/v1", tags=["dead letters"])


class DeadLetterPage(BaseModel):
    items: list[DeadLetterView]
    next_before_id: int | None
    """Pass as ``before_id`` for the next (older) page; null on the last page."""


@router.get("/dead-letters", response_model=DeadLetterPage)
async def get_dead_letters(
    context: Context,
    principal: Operator,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Limit = DEFAULT_PAGE,
) -> DeadLetterPage:
    """Dead letters (payloads may hold gateway data, so viewers do not see them).

    A dead letter cannot always be put down to a site (its topic may be what was wrong), so
    only keys for all sites see them.
    """
    if principal.sites:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "dead letters cannot all be put down to a site; only keys for all sites see them",
        )
    async with context.store.read("listing dead letters") as conn:
        found = await list_dead_letters(conn, before_id, limit + 1)
    more = len(found) > limit
    found = found[:limit]
    return DeadLetterPage(items=found, next_before_id=found[-1].id if more else None)
