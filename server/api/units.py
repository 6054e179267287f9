"""``GET /api/v1/units/{epc}``: where a tagged unit is, its status and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from server.api.auth import Context, Viewer
from server.api.params import EPC_PATTERN, MAX_PAGE
from server.queries.units import unit
from server.queries.views import UnitView

router = APIRouter(prefix="/api/v1", tags=["units"])


@router.get(
    "/units/{epc}",
    response_model=UnitView,
    responses={404: {"description": "No unit with that EPC has been seen."}},
)
async def get_unit(
    context: Context,
    principal: Viewer,
    epc: Annotated[str, Path(min_length=9, max_length=200, pattern=EPC_PATTERN)],
    history_limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> UnitView:
    """The unit's current status and location, its item, and its newest ledger rows.

    A key restricted to sites sees a unit that is at one of them or has moved through one
    (and only those rows of its history).
    """
    async with context.store.read("reading a unit") as conn:
        found = await unit(conn, epc, history_limit, principal.sites)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no unit with EPC {epc!r}")
    return found
