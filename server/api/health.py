"""``GET /healthz`` (no auth) and ``GET /metrics`` (Prometheus text, no auth)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from server.api.auth import Context

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    """``ok`` when the database answers and takes writes and MQTT is connected, else
    ``degraded``."""
    database: bool
    mqtt: bool | None
    """None when this app runs without an MQTT connection."""
    database_full_since: datetime | None = None
    """Set while the database refuses writes for lack of space: ingest sends no Acks (the
    gateways keep their events) until a write commits again."""
    database_error: str | None = None
    """The last refused write, while ``database_full_since`` is set."""


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Database down or full, or MQTT down."}},
)
async def healthz(context: Context, response: Response) -> Health:
    """Whether the database answers and takes writes and the MQTT connection is up (503 if
    not)."""
    database = await context.store.ping()
    full = context.store.full
    mqtt = context.mqtt_connected() if context.mqtt_connected is not None else None
    healthy = database and full is None and mqtt is not False
    if not healthy:
        response.status_code = 503
    return Health(
        status="ok" if healthy else "degraded",
        database=database,
        mqtt=mqtt,
        database_full_since=full.since if full is not None else None,
        database_error=full.error if full is not None else None,
    )


@router.get("/metrics", response_class=Response)
async def metrics(context: Context) -> Response:
    """Prometheus text exposition of this server's counters."""
    return Response(context.metrics.render(), media_type=CONTENT_TYPE_LATEST)
