"""``GET /api/v1/gateways``: each gateway's last status and when it was last heard from."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from server.api.auth import Context, Viewer
from server.api.params import MAX_PAGE
from server.queries import list_gateways
from server.views import GatewayView

router = APIRouter(prefix="/api/v1", tags=["gateways"])


class GatewayList(BaseModel):
    items: list[GatewayView]


@router.get("/gateways", response_model=GatewayList)
async def get_gateways(context: Context, principal: Viewer) -> GatewayList:
    """Every gateway that has reported a status (at most 1000), by id; of the key's sites."""
    async with context.store.read("listing gateways") as conn:
        found = await list_gateways(conn, MAX_PAGE)
    return GatewayList(items=[gateway for gateway in found if principal.allows(gateway.site)])
