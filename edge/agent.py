"""The edge agent's composition root: readers → pass trackers → outbox → publisher, plus status.

One ``EdgeAgent.run`` owns everything it starts: the outbox (and its flusher), the MQTT
client, one reader per ``[[llrp]]`` (or the readers handed in), and a TaskGroup with one
named task per reader, the tracker tick, the publisher and the status reporter. The read
loops themselves (a reader's stream to the read points and scan sessions, what ends to
the outbox) are ``edge.intake``'s. On stop or cancellation the readers close first, the
passes still open are ended and stored (what was read is kept), the outbox commits, the
offline status goes out, then the link closes.

Durability window: a read becomes part of an event when its pass ends (the tag has been
quiet for ``departure_timeout_s``, or at most ``MAX_PASS_S`` into a pass), is appended
at the next tick (``edge.intake.TICK_S``) and committed at most ``commit_interval_ms``
later. Reads of passes still open live in memory only; a crash (not a clean stop) loses
those passes. Keeping every raw read on disk would cost a write per read on the hot path
for passes that the portal reads again anyway while the goods are still in the field.

Read points (``edge.readpoints``): each read goes through its reader's software filter,
then to every read point of that reader: portals (passes with direction, optionally only
inside photo-eye windows, with a light stack), zones (arrive/depart) and cooldown
de-duplication. Health (``edge.monitor``) turns reader states, antenna reports and the
outbox's fill and age into issues listed in the status; it runs every status interval
whether or not the broker is there. Metrics are served on ``[metrics]`` when set.

Remote configuration (``edge.remote_config``): the agent subscribes to its config topic;
a ``GatewayConfig`` the server publishes there is merged over the local file, checked
(gateway, site, version order, the edge's settings models) and applied by ``retune``
without a restart: read points take over their open passes, a reader whose settings
changed reconnects with its new ROSpec, the outbox is untouched. The version running or
the refusal and why goes out in the next status; the last good one is kept on disk and
used at the next start.

Serial scanners: one ``SerialScanner`` per ``[[scanners]]`` runs beside the readers, with
a ``ScanSession`` (``edge.scanning``) that turns its scans into events by the scanner's
location and mode; each event is appended to the outbox as soon as its scan arrives (a
count when its END is scanned). A count still open at a stop is not sent, and said so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Final

from pydantic import ValidationError

from edge.buffer.outbox import Outbox, OutboxError
from edge.clock_sync import clock_synchronised, wait_for_sync
from edge.config import EdgeSettings
from edge.counters import EdgeCounters
from edge.health import CpuMeter, IssueBoard, rss_bytes
from edge.host import HostProbe
from edge.intake import Intake
from edge.metrics import MetricsServer, registry_for
from edge.monitor import HealthMonitor
from edge.publisher import Publisher
from edge.rates import RateMeter
from edge.readers.port import Reader, Retunable
from edge.readpoints import ReadPoints, gpi_ports
from edge.remote_config import RemoteConfig
from edge.scanning import ScanSession
from edge.status import StatusReporter, last_will
from plumbing import software_version
from plumbing.mqtt import Message, MqttClient, MqttError
from wire import topics
from wire.models import (
    MAX_ANTENNAS,
    MAX_READERS,
    ConfigRejection,
    ReaderStatus,
    Status,
    now_utc,
)

log = logging.getLogger(__name__)

MAX_CLIENT_ID: Final = 64


def serial_scanners(settings: EdgeSettings) -> dict[str, Reader]:
    """One serial barcode scanner per ``[[scanners]]`` table."""
    from edge.readers.serial_scanner import SerialScanner

    return {scanner.name: SerialScanner(scanner) for scanner in settings.scanners}


def llrp_readers(settings: EdgeSettings) -> dict[str, Reader]:
    """One LLRP reader per ``[[llrp]]`` table."""
    from edge.readers.llrp import LlrpReader

    ports = gpi_ports(settings)
    return {
        reader.name: LlrpReader(reader, gpi_ports=ports.get(reader.name, ()))
        for reader in settings.llrp
    }


def reader_antennas(settings: EdgeSettings) -> dict[str, list[int]]:
    """The antennas the config uses, per reader: its ``antennas``, else its read points'."""
    used: dict[str, set[int]] = {}
    for portal in settings.portals:
        used.setdefault(portal.reader, set()).update(
            (*portal.outside_antennas, *portal.inside_antennas)
        )
    for zone in settings.zones:
        used.setdefault(zone.reader, set()).update(zone.antennas)
    for dedupe in settings.dedupe:
        used.setdefault(dedupe.reader, set()).update(dedupe.antennas)
    for reader in settings.llrp:
        if reader.antennas:
            used[reader.name] = set(reader.antennas)
    return {name: sorted(found)[:MAX_ANTENNAS] for name, found in used.items() if found}


class EdgeAgent:
    """The edge agent for one gateway.

    Args:
        settings: the validated edge config.
        readers: readers by name, instead of building one per ``[[llrp]]`` (tests, sims).
        host: where the board's facts (disk, temperature, throttling) are read.
    """

    def __init__(
        self,
        settings: EdgeSettings,
        *,
        readers: Mapping[str, Reader] | None = None,
        host: HostProbe | None = None,
    ) -> None:
        self.local = settings
        """The settings of the local file (identity, credentials, broker, wiring)."""
        self.remote = RemoteConfig(settings, settings.remote_config_path)
        """The server's tuning: the version running, the last refusal (``edge.remote_config``)."""
        settings = self.remote.load_saved()
        self.settings = settings
        """The settings running: the local file with the server's tuning over it."""
        self.site = settings.gateway.site
        self.gateway = settings.gateway.id
        self._readers = dict(readers) if readers is not None else None
        self.issues = IssueBoard()
        """Health issues listed in the status (the gateway's alerts)."""
        self.points = ReadPoints(settings, self.issues)
        self.trackers = self.points.trackers
        """Every read point (portals, zones, de-duplication), in config order."""
        self.monitor = HealthMonitor(settings, self.issues)
        self.counters = EdgeCounters()
        """What the agent counts (reads, passes, scans, refusals); metrics read it."""
        self.oldest_age_s: float | None = None
        """Age of the oldest unacknowledged event at the last health check."""
        self.clock_synced: bool | None = None
        """Whether the kernel said the clock is synchronised (None: not checked)."""
        self.publisher: Publisher | None = None
        self._client: MqttClient | None = None
        self._cpu = CpuMeter()
        self._started = 0.0
        self.readers: dict[str, Reader] = {}
        """The readers of the current run."""
        self._outbox: Outbox | None = None
        self.metrics_server: MetricsServer | None = None
        """Serving ``/metrics`` while the agent runs (``[metrics] port`` set)."""
        self._rate: RateMeter | None = None
        self.sessions = {scanner.name: ScanSession(scanner) for scanner in settings.scanners}
        """One scan session per ``[[scanners]]``: location, mode and open count."""
        self.intake = Intake(self.points, self.sessions, self.monitor, self.counters)
        """The read loops: readers to read points and scan sessions, events to the outbox."""
        self._host = host if host is not None else HostProbe()
        self._software_version = software_version()
        self._antennas = reader_antennas(settings)
        self._reporter: StatusReporter | None = None

    @property
    def outbox(self) -> Outbox | None:
        """The open outbox while the agent runs."""
        return self._outbox

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or the task is cancelled), then shut down cleanly.

        Raises:
            OutboxError: the outbox cannot be opened (locked, damaged, other gateway).
        """
        settings = self.settings
        readers = self._readers if self._readers is not None else llrp_readers(settings)
        readers = {**readers, **serial_scanners(settings)}
        self.readers = readers
        self._started = self.clock()
        self.monitor.start(readers, self._started)
        for tracker in self.trackers:
            if tracker.reader not in readers:
                log.warning(
                    "portal %s: reader %r is not running; the portal sees nothing",
                    tracker.read_point,
                    tracker.reader,
                )
        if settings.gateway.wait_for_time_sync_s > 0:
            # No reader runs yet, so no event can be stamped with a wrong clock.
            self.clock_synced = await wait_for_sync(settings.gateway.wait_for_time_sync_s)
        buffer = settings.buffer
        client_id = (settings.mqtt.client_id or f"stockgate-edge-{self.gateway}")[:MAX_CLIENT_ID]
        loop = asyncio.get_running_loop()
        intake = self.intake
        self._rate = RateMeter(loop.time())
        async with (
            Outbox.open(
                buffer.path,
                self.gateway,
                commit_interval_ms=buffer.commit_interval_ms,
                max_events=buffer.max_events,
                max_uncommitted=buffer.max_uncommitted,
                max_file_mb=buffer.max_file_mb,
            ) as outbox,
            MqttClient(
                settings.mqtt,
                client_id,
                will=last_will(self.site, self.gateway, self.remote.version),
            ) as client,
        ):
            self._outbox = outbox
            intake.outbox = outbox
            self._client = client
            publisher = Publisher(
                outbox,
                client,
                site=self.site,
                gateway=self.gateway,
                batch_size=buffer.batch_size,
                max_in_flight=buffer.max_in_flight,
                resend_after_s=buffer.resend_after_s,
                resend_max_s=buffer.resend_max_s,
                drain_rate_per_s=buffer.drain_rate_per_s,
                on_other=self._on_message,
                on_refused=intake.refused,
            )
            self.publisher = publisher
            self.points.attach_lights(readers, lambda: client.connected)
            reporter = StatusReporter(
                client,
                site=self.site,
                gateway=self.gateway,
                interval_s=settings.status.interval_s,
                snapshot=self.status,
                config_version=lambda: self.remote.version,
            )
            self._reporter = reporter
            if settings.remote_config.enabled:
                await self._subscribe_config(client)
            log.info(
                "edge agent %s/%s: %d readers, %d portals, outbox %s",
                self.site,
                self.gateway,
                len(readers),
                len(self.trackers),
                buffer.path,
            )
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if settings.metrics.port is not None:
                        await self._serve_metrics(stack)
                    for name, reader in readers.items():
                        await stack.enter_async_context(reader)
                        log.info("reader %s started", name)
                    async with asyncio.TaskGroup() as tasks:
                        running = [
                            tasks.create_task(intake.read(name, reader), name=f"reader:{name}")
                            for name, reader in readers.items()
                        ]
                        running.append(tasks.create_task(intake.tick(), name="pass-tick"))
                        running.append(tasks.create_task(publisher.run(), name="publisher"))
                        running.append(tasks.create_task(reporter.run(), name="status"))
                        running.append(tasks.create_task(self._health(), name="health"))
                        running.extend(
                            tasks.create_task(lights.run(), name=f"lights:{read_point}")
                            for read_point, lights in self.points.lights.items()
                        )
                        await (stop.wait() if stop is not None else loop.create_future())
                        log.info("edge agent %s stopping", self.gateway)
                        for task in running:
                            task.cancel()
            finally:
                intake.finish()
                try:
                    await outbox.flush()
                except OutboxError as err:
                    log.error("edge agent: final commit failed: %s", err)
                await reporter.publish_offline()
                log.info(
                    "edge agent %s stopped: %d reads, %d passes stored, %d events held",
                    self.gateway,
                    self.counters.reads,
                    self.counters.passes,
                    outbox.depth(),
                )
                self._outbox = None
                intake.outbox = None

    # -- remote configuration -----------------------------------------------------------

    async def _subscribe_config(self, client: MqttClient) -> None:
        topic = topics.config(self.site, self.gateway)
        try:
            await client.subscribe(topic, qos=1)
        except (MqttError, TimeoutError) as err:
            # Recorded by the client and made again on the next connect.
            log.warning("remote config: subscribing to %s failed for now: %s", topic, err)

    async def _on_message(self, message: Message) -> None:
        if message.topic != topics.config(self.site, self.gateway):
            return
        applied = self.remote.receive(message.payload)
        if applied is not None:
            try:
                self.retune(applied.settings)
            except (ValueError, ValidationError) as err:
                # Validated before; a failure here is a bug, and the old tuning runs on.
                log.error("remote config %d not applied: %s", applied.config.config_version, err)
                self.remote.rejected = ConfigRejection(
                    config_version=applied.config.config_version,
                    reason=f"not applied: {err}"[:2000],
                    at=now_utc(),
                )
            else:
                self.remote.applied(applied)
        if self._reporter is not None:
            self._reporter.poke()

    def retune(self, settings: EdgeSettings) -> None:
        """Run with ``settings`` from now on, without a restart (a remote configuration).

        Read points take over what they hold (open passes, zone stays, cooldowns; see
        ``ReadPoints.retune``), so nothing read is lost and the outbox is untouched; a
        reader whose own settings changed (other than its software filter) reconnects to
        send its new ROSpec. ``settings`` differs from the running ones only in what
        ``edge.remote_config`` lets the server tune.
        """
        before = {reader.name: reader for reader in self.settings.llrp}
        self.points.retune(settings)
        self.trackers = self.points.trackers
        self.monitor.retune(settings)
        self._antennas = reader_antennas(settings)
        for reader_settings in settings.llrp:
            old = before.get(reader_settings.name)
            running = self.readers.get(reader_settings.name)
            if old is None or running is None:
                continue
            unfiltered = reader_settings.model_copy(update={"filter": old.filter})
            if unfiltered != old and isinstance(running, Retunable):
                running.retune(reader_settings)
        self.settings = settings

    def clock(self) -> float:
        """The agent's monotonic clock (the event loop's)."""
        return asyncio.get_running_loop().time()

    @property
    def mqtt_connected(self) -> bool:
        """Whether the broker link is up now."""
        return self._client is not None and self._client.connected

    async def _health(self) -> None:
        # Health is judged with the broker away too: that is when the backlog ages.
        while True:
            await asyncio.sleep(self.settings.status.interval_s)
            await self.check_health()

    async def check_health(self) -> float | None:
        """Evaluate readers and outbox into health issues; returns the oldest event's age."""
        outbox = self._outbox
        oldest = None
        if outbox is not None:
            try:
                oldest = await outbox.oldest_age_s()
            except OutboxError as err:
                log.warning("health: %s", err)
        self.oldest_age_s = oldest
        statuses = {name: self._reader_status(name, r) for name, r in self.readers.items()}
        self.monitor.evaluate_readers(statuses, self.clock())
        if self.settings.gateway.wait_for_time_sync_s > 0:
            self.clock_synced = clock_synchronised() is not False
            self.monitor.evaluate_clock(self.clock_synced)
        if outbox is not None:
            self.monitor.evaluate_outbox(
                outbox.depth(), outbox.full, oldest, outbox.commit_error, outbox.uncommitted()
            )
        return oldest

    async def _serve_metrics(self, stack: contextlib.AsyncExitStack) -> None:
        metrics = self.settings.metrics
        server = MetricsServer(registry_for(self), metrics.host, metrics.port or 0)
        try:
            await stack.enter_async_context(server)
        except OSError as err:
            # Metrics are for watching; a taken port must not stop the reads.
            log.error("metrics not served on %s:%s: %s", metrics.host, metrics.port, err)
            return
        self.metrics_server = server

    async def status(self) -> Status:
        """The current online status of this gateway."""
        outbox = self._outbox
        oldest = await self.check_health()
        depth = outbox.depth() if outbox is not None else 0
        throttling = self._host.throttling()
        rate = 0.0
        if self._rate is not None:
            rate = self._rate.rate(self.counters.reads, asyncio.get_running_loop().time())
        return Status(
            gateway=self.gateway,
            site=self.site,
            state="online",
            at=now_utc(),
            readers=[self._reader_status(n, r) for n, r in self.readers.items()][:MAX_READERS],
            buffer_depth=depth,
            buffer_full=outbox.full if outbox is not None else False,
            events_refused=self.counters.refused,
            oldest_unacked_age_s=oldest,
            reads_per_s=round(rate, 1),
            buffer_age_alarm=self.monitor.backlog_alarm,
            unread_windows=sum(self.points.unread_windows.values()),
            issues=self.issues.issues(self.clock()),
            cpu_percent=self._cpu.percent(),
            rss_bytes=rss_bytes(),
            uptime_s=round(max(0.0, self.clock() - self._started), 1),
            software_version=self._software_version,
            config_version=self.remote.version,
            config_rejected=self.remote.rejected,
            disk_free_bytes=self._host.disk_free_bytes(self.settings.buffer.path),
            cpu_temp_c=self._host.cpu_temp_c(),
            throttled=throttling.now if throttling is not None else None,
            throttled_since_boot=throttling.since_boot if throttling is not None else None,
        )

    def _reader_status(self, name: str, reader: Reader) -> ReaderStatus:
        status = reader.status()
        update: dict[str, object] = {}
        error = self.intake.error_to_show(name, status.last_error, self.clock())
        if error is not None:
            update["last_error"] = error
        antennas = self._antennas.get(name)
        if antennas and not status.antennas:
            update["antennas"] = antennas
        return status.model_copy(update=update) if update else status


async def run_edge(
    settings: EdgeSettings,
    *,
    readers: Mapping[str, Reader] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the edge agent for ``settings`` until ``stop`` is set or the task is cancelled."""
    await EdgeAgent(settings, readers=readers).run(stop)
