"""Composition root of the server: store, MQTT, ingest and the HTTP API in one TaskGroup.

Start-up order: (the embedded broker, if ``[mqtt] url = "embedded"``), open the store and
run ``upgrade head``, write ``[[read_points]]`` to the read point table (config wins; see
``server.commands.read_points``), connect MQTT, subscribe to events and statuses (QoS 1), and
serve the API on a socket bound here (so port 0 works and the bound port is known at once). Shutdown
is cancellation: the API stops accepting and drains, MQTT disconnects cleanly, the engine
is disposed.

MQTT session: the server connects with ``clean_start=False`` and a stable client id
(``[mqtt] client_id``, default ``stockgate-server``), so the broker queues QoS 1 batches
published while the server is down and delivers them on reconnect instead of waiting for
each edge's re-send timer. That is a speed-up, not the guarantee: paho acknowledges a
message to the broker before it is committed, so a crash can lose the broker's copy; the
edge keeps every event until the server's Ack and re-sends. Two server instances must not
share a client id (the broker would disconnect one for the other); give each instance its
own ``[mqtt] client_id`` and set ``[ingest] shared_subscription = true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Protocol, TypeVar

import uvicorn

from plumbing.broker import EmbeddedBroker
from plumbing.mqtt import MqttClient, MqttError
from plumbing.settings import MqttSettings
from server.alerts.relay import AlertRelay
from server.alerts.stream import StreamFeed
from server.alerts.sweeps import AlertSweeper
from server.alerts.webhooks import WebhookDispatcher
from server.api.factory import create_app
from server.commands.gateway_config import ConfigRelay
from server.commands.read_points import ReadPointCatalog
from server.config.settings import ServerSettings
from server.epcis.subscriptions import EpcisSubscriptions
from server.errors import PublishFailed, ServerError
from server.history.check import history_report, rebuild_history
from server.history.follow import LedgerFollower
from server.history.influx import InfluxSink
from server.history.metrics_feed import ledger_counter, run_gateway_export
from server.history.rollups import RollupSink
from server.ingest.acks import Publisher
from server.ingest.consumer import Ingestor
from server.ingest.gateway_status import StatusRecorder
from server.ingest.gateway_trust import GatewayTrust
from server.ingest.pipeline import run_ingest
from server.metrics import Metrics
from server.replenishment.planner import ReplenishmentScheduler
from server.reports.shards import ReportPool
from server.store.check import ledger_report
from server.store.database import Store
from server.store.retention import Pruner
from wire import topics

log = logging.getLogger(__name__)

Result = TypeVar("Result")
ReportT = TypeVar("ReportT", bound="_Report")

DEFAULT_CLIENT_ID = "stockgate-server"
API_BACKLOG = 2048
API_DRAIN_S = 5
SUBSCRIBE_TIMEOUT_S = 10.0


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the process owner decides how we stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP, and without it keep-alive requests wait ~40 ms for
    # the client's delayed ACK (measured in bench/: /healthz p50 52 ms -> 6.5 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(API_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _publisher(client: MqttClient, *, retain: bool = False) -> Publisher:
    async def publish(topic: str, payload: bytes) -> None:
        try:
            await client.publish(topic, payload, qos=1, retain=retain)
        except MqttError as err:
            raise PublishFailed(f"publish to {topic} failed: {err}") from err

    return publish


class Server:
    """One server instance.

    Args:
        settings: the validated server config.
        mqtt_url_override: broker URL to use instead of ``[mqtt] url`` (the demo's broker).
    """

    def __init__(self, settings: ServerSettings, *, mqtt_url_override: str | None = None) -> None:
        self.settings = settings
        self._mqtt_url_override = mqtt_url_override
        self.api_port: int | None = None
        """The port the API listens on, once ``run`` has bound it."""
        self.mqtt_url: str | None = None
        self.store: Store | None = None
        self.followers: list[LedgerFollower] = []
        """The history followers, once ``run`` has made them."""
        self.influx_sink: InfluxSink | None = None
        """The history followers, once ``run`` has made them."""

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Run until cancelled.

        Args:
            ready: set once the schema is migrated, the API socket listens, and MQTT is
                connected with both subscriptions acknowledged.

        Raises:
            StoreError: the database cannot be reached or migrated.
            OSError: the API address cannot be bound.
        """
        async with contextlib.AsyncExitStack() as stack:
            for name, entry in zip(
                self.settings.api.key_names(), self.settings.api.keys, strict=True
            ):
                if entry.key is not None:
                    log.warning(
                        "API key %r is written in plaintext in the config; replace it with "
                        "key_sha256 (stockgate server mint-key)",
                        name,
                    )
            if not self.settings.gateways:
                log.warning(
                    "no [[gateways]] registry is configured: any gateway may send events for "
                    "any read point (the demo/single-box default); list each gateway in "
                    "[[gateways]] to close it"
                )
            mqtt = await self._mqtt_settings(stack)
            store = Store.open(self.settings.database)
            stack.push_async_callback(store.close)
            await store.migrate()
            # Read points as data: the config's are written to the table (config wins).
            read_points = ReadPointCatalog(store, self.settings.read_points)
            await read_points.seed()
            self.store = store
            metrics = Metrics()

            client_id = mqtt.client_id or DEFAULT_CLIENT_ID
            client = await stack.enter_async_context(MqttClient(mqtt, client_id, clean_start=False))
            # Alert delivery: the relay (MQTT + webhook outbox), the webhook sender, the
            # periodic condition checks, the live stream (see their modules).
            webhooks = WebhookDispatcher(
                store, self.settings.alerts, self.settings.webhooks, registry=metrics.registry
            )
            relay = AlertRelay(
                store,
                _publisher(client),
                self.settings.alerts,
                self.settings.webhooks,
                on_deliveries=webhooks.poke,
            )
            sweeper = AlertSweeper(
                store, self.settings.alerts, on_alerts=relay.poke, read_points=read_points.table
            )
            # Partner exchange and replenishment (issue 15): EPCIS subscriptions, planner.
            epcis_feed = EpcisSubscriptions(store, self.settings.epcis)
            planner = ReplenishmentScheduler(
                store, self.settings.replenishment, on_alerts=relay.poke
            )
            feed = StreamFeed(store, self.settings.stream)
            stack.push_async_callback(feed.close)
            ingestor = Ingestor(
                store,
                self.settings,
                _publisher(client),
                metrics,
                read_points=read_points,
                relay=relay,
            )
            recorder = StatusRecorder(
                store,
                self.settings.ingest,
                metrics,
                alerts=self.settings.alerts,
                on_alerts=relay.poke,
                trust=GatewayTrust(self.settings),
            )
            # Gateway configurations: retained on their topics, again after every connect.
            configs = ConfigRelay(store, _publisher(client, retain=True))
            client.on_connect(configs.on_connect)
            configs.poke()
            subscriptions = (self._events_filter(), topics.STATUS_SUBSCRIPTION)
            for topic_filter in subscriptions:
                await client.subscribe(topic_filter, qos=1)

            report_pool = None
            workers = self.settings.history.report_workers
            if workers:
                report_pool = ReportPool(self.settings.database, workers)
                stack.callback(report_pool.close)
                report_pool.start()
            app = create_app(
                store,
                self.settings,
                metrics,
                mqtt_connected=lambda: client.connected,
                read_points=read_points,
                stream_feed=feed,
                config_relay=configs,
                report_pool=report_pool,
            )
            sock = _listen(self.settings.api.host, self.settings.api.port)
            stack.callback(sock.close)
            self.api_port = int(sock.getsockname()[1])
            api = _EmbeddedUvicorn(
                uvicorn.Config(
                    app,
                    log_level="warning",
                    lifespan="off",
                    timeout_graceful_shutdown=API_DRAIN_S,
                    access_log=False,
                )
            )
            log.info(
                "server up: API on http://%s:%d, broker %s",
                self.settings.api.host,
                self.api_port,
                mqtt.url,
            )
            async with asyncio.TaskGroup() as group:
                group.create_task(self._serve_api(api, sock, feed), name="server-api")
                group.create_task(relay.run(), name="server-alert-relay")
                group.create_task(sweeper.run(), name="server-alert-sweeps")
                group.create_task(
                    Pruner(store, self.settings.retention).run(), name="server-retention"
                )
                group.create_task(configs.run(), name="server-gateway-configs")
                if self.settings.webhooks:
                    group.create_task(webhooks.run(), name="server-webhooks")
                group.create_task(run_gateway_export(store, metrics), name="server-gateway-metrics")
                for follower in self._followers(store, metrics, ingestor.busy):
                    group.create_task(follower.run(), name=f"server-history-{follower.name}")
                if self.influx_sink is not None:
                    group.create_task(
                        self.influx_sink.run_samples(store), name="server-history-samples"
                    )
                if self.settings.replenishment.enabled:
                    group.create_task(planner.run(), name="server-replenishment")
                if self.settings.epcis.subscriptions:
                    group.create_task(epcis_feed.run(), name="server-epcis-subscriptions")
                group.create_task(
                    run_ingest(client.messages(), ingestor, recorder), name="server-ingest"
                )
                group.create_task(
                    self._announce_ready(client, subscriptions, ready), name="server-ready"
                )

    def _followers(
        self, store: Store, metrics: Metrics, busy: Callable[[], bool]
    ) -> list[LedgerFollower]:
        """The ledger followers this instance runs (each works only while it holds the
        lease of its cursor, so every instance may run them); they defer to ingest (``busy``)."""
        history = self.settings.history
        if not history.enabled:
            return []
        on_rows = ledger_counter(metrics)
        followers = [LedgerFollower(store, RollupSink(), history, on_rows=on_rows, busy=busy)]
        if self.settings.influxdb is not None:
            sink = InfluxSink(self.settings.influxdb)
            self.influx_sink = sink
            followers.append(LedgerFollower(store, sink, history, on_rows=on_rows, busy=busy))
        self.followers = followers
        return followers

    async def _mqtt_settings(self, stack: contextlib.AsyncExitStack) -> MqttSettings:
        url = self._mqtt_url_override or self.settings.mqtt.url
        if url == "embedded":
            broker = await stack.enter_async_context(
                EmbeddedBroker(self.settings.embedded_broker.port)
            )
            url = broker.url
        self.mqtt_url = url
        return self.settings.mqtt.model_copy(update={"url": url})

    def _events_filter(self) -> str:
        if self.settings.ingest.shared_subscription:
            return topics.SHARED_EVENTS_SUBSCRIPTION
        return topics.EVENTS_SUBSCRIPTION

    @staticmethod
    async def _announce_ready(
        client: MqttClient, subscriptions: tuple[str, ...], ready: asyncio.Event | None
    ) -> None:
        while True:
            await client.wait_connected()
            try:
                # Subscribing again is harmless and waits for the broker's SUBACK.
                for topic_filter in subscriptions:
                    await client.subscribe(topic_filter, qos=1, timeout=SUBSCRIBE_TIMEOUT_S)
            except (MqttError, TimeoutError) as err:
                log.warning("subscribing failed (%s); waiting for the next connection", err)
                await asyncio.sleep(0.5)
                continue
            break
        if ready is not None:
            ready.set()

    @staticmethod
    async def _serve_api(api: uvicorn.Server, sock: socket.socket, feed: StreamFeed) -> None:
        serving = asyncio.create_task(api.serve(sockets=[sock]), name="server-api-serve")
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            # Let uvicorn close its listener and drain connections instead of dying mid-way;
            # live streams never end on their own, so end them first.
            api.should_exit = True
            await feed.close()
            await serving
            raise


async def run_server(
    settings: ServerSettings,
    *,
    mqtt_url_override: str | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run a server until cancelled (see ``Server.run``)."""
    await Server(settings, mqtt_url_override=mqtt_url_override).run(ready)


async def _on_store(
    settings: ServerSettings, work: Callable[[Store], Awaitable[Result]]
) -> Result | None:
    """``work`` on the configured database, closed after; None when it failed (said)."""
    store = Store.open(settings.database)
    try:
        return await work(store)
    except ServerError as err:
        print(f"error: {err}")
        return None
    finally:
        await store.close()


class _Report(Protocol):
    @property
    def lines(self) -> list[str]: ...


async def _check(
    settings: ServerSettings, check: Callable[[Store], Awaitable[ReportT]]
) -> ReportT | None:
    """``check`` on the configured database, each line of its report printed."""
    report = await _on_store(settings, check)
    for line in report.lines if report is not None else []:
        print(line)
    return report


async def check_ledger_command(settings: ServerSettings) -> int:
    """``stockgate server check-ledger``: print differences; exit status 1 if any, 2 on error."""
    report = await _check(settings, ledger_report)
    if report is None:
        return 2
    if report.balances:
        print(f"{len(report.balances)} balance(s) disagree with the ledger")
    if report.reversals:
        print(f"{len(report.reversals)} reversal(s) do not mirror the row they reverse")
    if report.references:
        print("rows name items or locations that do not exist (see above)")
    if report.lines:
        return 1
    print("balances agree with the ledger")
    return 0


async def _rebuild_history(store: Store) -> int:
    await store.migrate()
    return await rebuild_history(store)


async def rebuild_history_command(settings: ServerSettings) -> int:
    """``stockgate server rebuild-history``: the rollups summed again from the whole ledger."""
    position = await _on_store(settings, _rebuild_history)
    if position is None:
        return 2
    print(f"history rebuilt from the ledger up to row {position}")
    return 0


async def check_history_command(settings: ServerSettings) -> int:
    """``stockgate server check-history``: print differences; exit 1 if any, 2 on error."""
    report = await _check(settings, history_report)
    if report is None:
        return 2
    if report.lines:
        print(f"{len(report.lines)} history bucket(s) disagree with the ledger")
        return 1
    behind = report.newest - report.position
    print(
        f"history agrees with the ledger up to row {report.position}"
        + (f" ({behind} newer row(s) not followed yet)" if behind > 0 else "")
    )
    return 0
