"""``GET /healthz`` (no auth) and ``GET /metrics`` (Prometheus text, no auth)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from server.api.auth import Context

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    """``ok`` when the database answers and MQTT is connected, else ``degraded``."""
    database: bool
    mqtt: bool | None
    """None when this app runs without an MQTT connection."""


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Database or MQTT down."}},
)
async def healthz(context: Context, response: Response) -> Health:
    """Whether the database answers and the MQTT connection is up (503 if not)."""
    database = await context.store.ping()
    mqtt = context.mqtt_connected() if context.mqtt_connected is not None else None
    healthy = database and mqtt is not False
    if not healthy:
        response.status_code = 503
    return Health(status="ok" if healthy else "degraded", database=database, mqtt=mqtt)


@router.get("/metrics", response_class=Response)
async def metrics(context: Context) -> Response:
    """Prometheus text exposition of this server's counters."""
    return Response(context.metrics.render(), media_type=CONTENT_TYPE_LATEST)
