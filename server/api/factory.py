"""``create_app``: the FastAPI application over a store, without any I/O of its own."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from server.alerts.stream import StreamFeed
from server.api import aggregations as aggregations_api
from server.api import alert_kinds as alert_kinds_api
from server.api import (
    alerts,
    dead_letters,
    docs,
    errors,
    gateways,
    health,
    movements,
    order_routes,
    stock,
    units,
)
from server.api import categories as categories_api
from server.api import costs as costs_api
from server.api import epcis as epcis_api
from server.api import history as history_api
from server.api import items as items_api
from server.api import locations as locations_api
from server.api import operations as operations_api
from server.api import process_reports as process_reports_api
from server.api import read_points as read_points_api
from server.api import replenishment as replenishment_api
from server.api import reports as reports_api
from server.api import shrinkage as shrinkage_api
from server.api import stream as stream_api
from server.api import unresolved_passes as unresolved_passes_api
from server.api import valuation as valuation_api
from server.api.context import ApiContext, KeyRing
from server.api.guard import BodyLimits, RequestGuard
from server.api.uploads import CSV_MEDIA_TYPE
from server.commands.csv_import import MAX_IMPORT_BYTES
from server.commands.gateway_config import ConfigRelay
from server.commands.read_points import ReadPointCatalog
from server.config.settings import ServerSettings
from server.console import pages as console
from server.metrics import Metrics
from server.reports.shards import ReportPool, ReportShards
from server.store.database import Store

API_VERSION = "1"


def create_app(
    store: Store,
    settings: ServerSettings,
    metrics: Metrics | None = None,
    *,
    mqtt_connected: Callable[[], bool] | None = None,
    read_points: ReadPointCatalog | None = None,
    stream_feed: StreamFeed | None = None,
    config_relay: ConfigRelay | None = None,
    report_pool: ReportPool | None = None,
) -> FastAPI:
    """The API over ``store``.

    Args:
        store: a migrated store.
        settings: API keys come from ``[[api.keys]]``.
        metrics: what ``/metrics`` exposes (pass ingest's; a fresh set when None).
        mqtt_connected: reports the MQTT link for ``/healthz``; None leaves MQTT out.
        read_points: ingest's read point catalog, told when the API changes read points;
            None: one of the app's own (no ingest in this process).
        stream_feed: what ``GET /api/v1/stream`` serves; None: one of the app's own over
            ``store`` (the caller closes a feed it passes when it shuts down).
        config_relay: publishes gateway configurations on their config topics; None:
            ``PUT /api/v1/gateways/{id}/config`` records them and reports them unpublished.
        report_pool: worker processes that compute shares of the whole-ledger reports
            (``server.reports.shards``); None: this process computes them alone.
    """
    app = FastAPI(
        title="stockgate",
        version=API_VERSION,
        description="Stock on hand, movement ledger, units, alerts and gateway health.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    keys = KeyRing(settings.api)
    metrics = metrics if metrics is not None else Metrics()
    metrics.watch_store(lambda: store.full is not None)
    app.state.context = ApiContext(
        store=store,
        metrics=metrics,
        keys=keys,
        mqtt_connected=mqtt_connected,
        reports=ReportShards(store, report_pool),
        policy=settings.policy(),
    )
    app.state.config_relay = config_relay
    docs.install(app)
    console.install(app)
    errors.install(app)
    app.state.read_points = (
        read_points if read_points is not None else ReadPointCatalog(store, settings.read_points)
    )
    routers: list[APIRouter] = []

    def include(router: APIRouter) -> None:
        app.include_router(router)
        routers.append(router)

    for master in (
        items_api,
        categories_api,
        locations_api,
        read_points_api,
        operations_api,
        costs_api,
    ):
        include(master.router)
    for module in (
        health,
        stock,
        movements,
        history_api,
        reports_api,
        units,
        alerts,
        gateways,
        dead_letters,
        unresolved_passes_api,
        shrinkage_api,
        aggregations_api,
        valuation_api,
        process_reports_api,
    ):
        include(module.router)
    app.state.stream_feed = (
        stream_feed if stream_feed is not None else StreamFeed(store, settings.stream)
    )
    for delivery in (alert_kinds_api, stream_api):
        include(delivery.router)
    for orders in order_routes.ROUTERS:
        include(orders)
    # Partner exchange and replenishment (issue 15).
    app.state.epcis = settings.epcis
    app.state.replenishment = settings.replenishment
    include(epcis_api.router)
    include(replenishment_api.router)
    # Last: it finds the routes that take a larger body among all of them.
    app.add_middleware(
        RequestGuard,
        keys=keys,
        limits=BodyLimits(
            settings.api.max_body_bytes,
            lambda: [
                # EPCIS capture documents have their own bound ([epcis] max_capture_bytes).
                (re.compile(r"^/api/v1/epcis/capture$"), settings.epcis.max_capture_bytes),
                *upload_limits(routers),
            ],
        ),
    )
    return app


def upload_limits(routers: Iterable[APIRouter]) -> list[tuple[re.Pattern[str], int]]:
    """The CSV import routes and the larger body they take.

    Found from the routes' own OpenAPI extras (a route that reads CSV declares a
    ``text/csv`` body), not from the whole OpenAPI document: building that takes a second
    or more, and it would fall on the first request a new server answers.
    """
    found: list[tuple[re.Pattern[str], int]] = []
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute) or not route.openapi_extra:
                continue
            content = route.openapi_extra.get("requestBody", {}).get("content", {})
            if CSV_MEDIA_TYPE in content:
                parts = re.split(r"\{[^}]+\}", route.path)
                pattern = "^" + "[^/]+".join(map(re.escape, parts)) + "$"
                found.append((re.compile(pattern), MAX_IMPORT_BYTES))
    return found
