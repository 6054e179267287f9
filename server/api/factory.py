"""``create_app``: the FastAPI application over a store, without any I/O of its own."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from server.api import alerts, dead_letters, errors, gateways, health, movements, stock, units
from server.api.context import ApiContext, KeyRing
from server.config import ServerSettings
from server.metrics import Metrics
from server.store import Store

API_VERSION = "1"


def create_app(
    store: Store,
    settings: ServerSettings,
    metrics: Metrics | None = None,
    *,
    mqtt_connected: Callable[[], bool] | None = None,
) -> FastAPI:
    """The API over ``store``.

    Args:
        store: a migrated store.
        settings: API keys come from ``[[api.keys]]``.
        metrics: what ``/metrics`` exposes (pass ingest's; a fresh set when None).
        mqtt_connected: reports the MQTT link for ``/healthz``; None leaves MQTT out.
    """
    app = FastAPI(
        title="stockgate",
        version=API_VERSION,
        description="Stock on hand, movement ledger, units, alerts and gateway health.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.context = ApiContext(
        store=store,
        metrics=metrics if metrics is not None else Metrics(),
        keys=KeyRing(settings.api),
        mqtt_connected=mqtt_connected,
    )
    errors.install(app)
    for module in (health, stock, movements, units, alerts, gateways, dead_letters):
        app.include_router(module.router)
    return app
