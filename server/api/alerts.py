"""``GET /api/v1/alerts`` and ``POST /api/v1/alerts/{id}/ack``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel

from server.alerts.store import acknowledge
from server.api.auth import Context, Operator, Viewer
from server.api.params import DEFAULT_PAGE, Limit
from server.queries.lists import AlertFilter, list_alerts
from server.queries.views import AlertView
from wire.models import now_utc

router = APIRouter(prefix="/api/v1", tags=["alerts"])
MAX_ID = 2**63 - 1


class AlertList(BaseModel):
    items: list[AlertView]


@router.get("/alerts", response_model=AlertList)
async def get_alerts(
    context: Context,
    _: Viewer,
    state: Annotated[
        AlertFilter,
        Query(
            description="open (default; acknowledged or not), unacknowledged, "
            "acknowledged, closed, or all."
        ),
    ] = "open",
    kind: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    limit: Limit = DEFAULT_PAGE,
) -> AlertList:
    """Alerts, newest first."""
    async with context.store.read("listing alerts") as conn:
        found = await list_alerts(conn, state, kind, limit)
    return AlertList(items=found)


@router.post(
    "/alerts/{alert_id}/ack",
    response_model=AlertView,
    responses={404: {"description": "No alert with that id."}},
)
async def ack_alert(
    context: Context,
    principal: Operator,
    alert_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> AlertView:
    """Record that the caller has seen the alert (idempotent; the alert stays open)."""
    async with context.store.begin(f"acknowledging alert {alert_id}") as conn:
        found = await acknowledge(conn, alert_id, principal.name, now_utc())
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert with id {alert_id}")
    return found
