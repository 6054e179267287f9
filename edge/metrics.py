"""Prometheus metrics of the edge agent, served on a local port (``[metrics]``).

The agent already counts what matters (reads, passes, refusals, publisher counters, the
outbox depth), so nothing here sits on the hot path: a custom collector reads those
counters when Prometheus scrapes, into its own ``CollectorRegistry`` (no global state,
several agents per process in tests). What it reads is ``Observed``, a protocol of the
few things it needs (the agent's ``EdgeCounters``, its read points' counts, health,
readers, outbox and publisher): ``EdgeAgent`` is one, and this module does not know the
agent. Process CPU and memory come from prometheus-client's ``ProcessCollector``.

Serving is a small asyncio HTTP/1.1 responder (``GET /metrics``), not prometheus-client's
threaded server: the agent is asyncio only. Requests are bounded (head size, time,
concurrent connections) and answered with ``Connection: close``. It listens on
127.0.0.1 by default; expose it wider only behind a firewall (it has no auth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Final, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from edge.buffer.outbox import Outbox
from edge.counters import EdgeCounters
from edge.health import IssueBoard
from edge.monitor import HealthMonitor
from edge.publisher import Publisher
from edge.readers.port import Reader
from edge.readpoints import ReadPoints
from plumbing.streams import close_writer, listen

log = logging.getLogger(__name__)

PREFIX: Final = "stockgate_edge"
MAX_HEAD: Final = 8 * 1024
"""Longest request line plus headers accepted."""
REQUEST_TIMEOUT_S: Final = 5.0
MAX_CONNECTIONS: Final = 16
STATES: Final = ("connecting", "connected", "disconnected", "error")


class Observed(Protocol):
    """What the metrics read at scrape time, and nothing else (``EdgeAgent`` is one)."""

    @property
    def counters(self) -> EdgeCounters:
        """Reads, passes, refusals and reader events counted so far."""
        ...

    @property
    def points(self) -> ReadPoints:
        """The read points, for their counts (filtered, outside a window, finished)."""
        ...

    @property
    def issues(self) -> IssueBoard:
        """The health issues listed in the status."""
        ...

    @property
    def monitor(self) -> HealthMonitor:
        """Health, for the outbox backlog alarm."""
        ...

    @property
    def readers(self) -> Mapping[str, Reader]:
        """The readers running, for their states, rates and antennas."""
        ...

    @property
    def outbox(self) -> Outbox | None:
        """The open outbox, for its depth and fill."""
        ...

    @property
    def oldest_age_s(self) -> float | None:
        """Age of the oldest unacknowledged event at the last health check."""
        ...

    @property
    def mqtt_connected(self) -> bool:
        """Whether the broker link is up now."""
        ...

    @property
    def publisher(self) -> Publisher | None:
        """The publisher, for its batch counters."""
        ...

    def clock(self) -> float:
        """The monotonic clock the health issues are kept on."""
        ...


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


class EdgeCollector(Collector):
    """Reads an agent's counters at scrape time."""

    def __init__(self, agent: Observed) -> None:
        self._agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self._agent
        points = agent.points
        reads = _counter("reads", "Tag reads received, by reader.", ["reader"])
        for reader, count in sorted(agent.counters.reads_by_reader.items()):
            reads.add_metric([reader], count)
        yield reads
        filtered = _counter("reads_filtered", "Reads dropped by software filters.", ["reader"])
        for reader, count in sorted(points.filtered.items()):
            filtered.add_metric([reader], count)
        yield filtered
        yield CounterMetricFamily(
            f"{PREFIX}_reads_ignored",
            "Reads on antennas no read point uses.",
            value=agent.counters.ignored_reads,
        )
        outside = _counter(
            "reads_outside_window",
            "Portal reads while its photo-eye window was closed.",
            ["read_point"],
        )
        for read_point, count in sorted(points.outside_window.items()):
            outside.add_metric([read_point], count)
        yield outside
        finished = _counter(
            "events_finished",
            "Passes, arrivals, departures and sightings finished, by kind.",
            ["read_point", "kind"],
        )
        for (read_point, kind), count in sorted(points.events.items()):
            finished.add_metric([read_point, kind], count)
        yield finished
        yield CounterMetricFamily(
            f"{PREFIX}_events_stored", "Events stored in the outbox.", value=agent.counters.passes
        )
        yield CounterMetricFamily(
            f"{PREFIX}_events_refused",
            "Events refused by a full outbox.",
            value=agent.counters.refused,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_events_invalid",
            "Finished passes that could not become an event.",
            value=agent.counters.bad_passes,
        )
        unread = _counter(
            "unread_windows", "Photo-eye windows that closed with no read.", ["read_point"]
        )
        for read_point, count in sorted(points.unread_windows.items()):
            unread.add_metric([read_point], count)
        yield unread
        events = _counter("reader_events", "Reader events, by kind.", ["kind"])
        for kind, count in sorted(agent.counters.reader_events.items()):
            events.add_metric([kind], count)
        yield events
        yield from self._readers()
        yield from self._outbox()
        yield from self._link()
        issues = _gauge("issues", "Health issues listed in the status.", ["kind", "severity"])
        counts: dict[tuple[str, str], int] = {}
        for issue in agent.issues.issues(agent.clock()):
            key = (issue.kind, issue.severity)
            counts[key] = counts.get(key, 0) + 1
        for (kind, severity), count in sorted(counts.items()):
            issues.add_metric([kind, severity], count)
        yield issues

    def _readers(self) -> Iterator[Metric]:
        state = _gauge("reader_state", "1 for the reader's current state.", ["reader", "state"])
        rate = _gauge(
            "reader_reads_per_second",
            "Reads per second over the last window, by antenna.",
            ["reader", "antenna"],
        )
        down = _gauge(
            "reader_antennas_disconnected", "Antennas the reader reports disconnected.", ["reader"]
        )
        for name, reader in sorted(self._agent.readers.items()):
            status = reader.status()
            for value in STATES:
                state.add_metric([name, value], 1.0 if status.state == value else 0.0)
            for antenna, per_s in sorted(status.antenna_reads_per_s.items()):
                rate.add_metric([name, antenna], per_s)
            down.add_metric([name], len(status.antennas_disconnected))
        yield state
        yield rate
        yield down

    def _outbox(self) -> Iterator[Metric]:
        agent = self._agent
        outbox = agent.outbox
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_depth",
            "Events held in the outbox (unacknowledged).",
            value=outbox.depth() if outbox is not None else 0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_full",
            "1 while the outbox refuses new events.",
            value=1.0 if outbox is not None and outbox.full else 0.0,
        )
        age = agent.oldest_age_s
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_age_seconds",
            "Age of the oldest unacknowledged event at the last health check.",
            value=age if age is not None else 0.0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_backlog_alarm",
            "1 while the oldest unacknowledged event is older than [buffer] max_age_s.",
            value=1.0 if agent.monitor.backlog_alarm else 0.0,
        )

    def _link(self) -> Iterator[Metric]:
        agent = self._agent
        yield GaugeMetricFamily(
            f"{PREFIX}_mqtt_connected",
            "1 while the broker link is up.",
            value=1.0 if agent.mqtt_connected else 0.0,
        )
        publisher = agent.publisher
        if publisher is None:
            return
        for name, doc, value in (
            ("batches_sent", "Batches published for the first time.", publisher.batches_sent),
            ("batches_resent", "Batches published again.", publisher.batches_resent),
            ("batches_acked", "Batches the server acknowledged.", publisher.batches_acked),
            ("events_acked", "Events the server acknowledged.", publisher.events_acked),
            ("acks_invalid", "Ack messages refused.", publisher.bad_acks),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        yield GaugeMetricFamily(
            f"{PREFIX}_batches_in_flight",
            "Batches sent and not yet acknowledged.",
            value=publisher.in_flight,
        )


def registry_for(agent: Observed) -> CollectorRegistry:
    """A registry of its own with the agent's metrics and the process's CPU and memory."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EdgeCollector(agent))
    ProcessCollector(registry=registry)
    return registry


class MetricsServer:
    """``GET /metrics`` on ``host:port``; an async context manager.

    Args:
        registry: what to expose.
        host: address to listen on (127.0.0.1 by default in config).
        port: TCP port; 0 picks a free one (see ``port`` once entered).
    """

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.served = 0

    async def __aenter__(self) -> MetricsServer:
        self._server, self.port = await listen(self._handle, self.host, self.port, limit=MAX_HEAD)
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers))
        if server is not None:
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if len(self._handlers) > MAX_CONNECTIONS:
                return
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                status, body, content_type = self._answer(head)
                writer.write(
                    (
                        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                    ).encode()
                    + (b"" if head.startswith(b"HEAD ") else body)
                )
                await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ConnectionError,
        ):
            pass
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await close_writer(writer, 1.0)
            self._handlers.discard(task)

    def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        text = "text/plain; charset=utf-8"
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return "400 Bad Request", b"bad request\n", text
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b"only GET\n", text
        if target != b"/metrics":
            return "404 Not Found", b"see /metrics\n", text
        self.served += 1
        return "200 OK", generate_latest(self._registry), CONTENT_TYPE_LATEST
