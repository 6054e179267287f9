"""``GET /api/v1/alert-kinds``: the alert catalogue (``server.rules.alerts``) as served data."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from server.api.auth import Viewer
from server.rules.alerts import ALERT_KINDS, ClearPolicy
from server.rules.model import Severity

router = APIRouter(prefix="/api/v1", tags=["alerts"])


class AlertKindView(BaseModel):
    kind: str
    severity: Severity
    condition: str
    clears: ClearPolicy
    clears_when: str


class AlertKindList(BaseModel):
    items: list[AlertKindView]


@router.get("/alert-kinds", response_model=AlertKindList)
async def get_alert_kinds(_: Viewer) -> AlertKindList:
    """Every alert kind the server raises: when it opens and how it clears."""
    return AlertKindList(
        items=[
            AlertKindView(
                kind=kind.kind,
                severity=kind.severity,
                condition=kind.condition,
                clears=kind.clears,
                clears_when=kind.clears_when,
            )
            for kind in ALERT_KINDS.values()
        ]
    )
