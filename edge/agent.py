"""The edge agent's composition root: readers → pass trackers → outbox → publisher, plus status.

One ``EdgeAgent.run`` owns everything it starts: the outbox (and its flusher), the MQTT
client, one reader per ``[[llrp]]`` (or the readers handed in), and a TaskGroup with one
named task per reader, the tracker tick, the publisher and the status reporter. On stop or
cancellation the readers close first, the passes still open are ended and stored (what
was read is kept), the outbox commits, the offline status goes out, then the link closes.

Durability window: a read becomes part of an event when its pass ends (the tag has been
quiet for ``departure_timeout_s``, or at most ``MAX_PASS_S`` into a pass), is appended
at the next tick (``TICK_S``) and committed at most ``commit_interval_ms`` later. Reads of
passes still open live in memory only; a crash (not a clean stop) loses those passes.
Keeping every raw read on disk would cost a write per read on the hot path for passes
that the portal reads again anyway while the goods are still in the field.

Serial scanners (``[[scanners]]``) are not read by this build; a configured one is named
in a warning at start so nobody waits for its scans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Final, Protocol

from pydantic import ValidationError

from edge.buffer.outbox import Outbox, OutboxError, OutboxFull
from edge.config import EdgeSettings
from edge.pipeline import Pass, PassTracker
from edge.publisher import Publisher
from edge.readers.types import ReaderEvent, TagRead
from edge.status import RateMeter, StatusReporter, last_will
from stockgate.mqtt import MqttClient
from wire.identifiers import IdentifierError
from wire.models import MAX_READERS, ReaderStatus, Status, now_utc

log = logging.getLogger(__name__)

TICK_S: Final = 0.1
"""How often open passes are checked for departure."""
MAX_CLIENT_ID: Final = 64


class Reader(Protocol):
    """The reader port: an async context manager and an async iterator of typed reads."""

    async def __aenter__(self) -> Reader: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[TagRead | ReaderEvent]: ...

    def status(self) -> ReaderStatus: ...


def llrp_readers(settings: EdgeSettings) -> dict[str, Reader]:
    """One LLRP reader per ``[[llrp]]`` table."""
    from edge.readers.llrp import LlrpReader

    return {reader.name: LlrpReader(reader) for reader in settings.llrp}


class EdgeAgent:
    """The edge agent for one gateway.

    Args:
        settings: the validated edge config.
        readers: readers by name, instead of building one per ``[[llrp]]`` (tests, sims).
    """

    def __init__(
        self, settings: EdgeSettings, *, readers: Mapping[str, Reader] | None = None
    ) -> None:
        self.settings = settings
        self.site = settings.gateway.site
        self.gateway = settings.gateway.id
        self._readers = dict(readers) if readers is not None else None
        self.trackers = [PassTracker(portal) for portal in settings.portals]
        self._by_reader: dict[str, list[PassTracker]] = {}
        for tracker in self.trackers:
            self._by_reader.setdefault(tracker.reader, []).append(tracker)
        self.reads = 0
        """Tag reads received from every reader."""
        self.ignored_reads = 0
        """Reads on an antenna (or a reader) no portal uses."""
        self.passes = 0
        """Passes stored in the outbox."""
        self.refused = 0
        """Passes refused by a full outbox."""
        self.bad_passes = 0
        """Passes that could not become an event (e.g. an EPC that is not hex)."""
        self.reader_events: Counter[str] = Counter()
        self._last_error: dict[str, str] = {}
        self.readers: dict[str, Reader] = {}
        """The readers of the current run."""
        self._outbox: Outbox | None = None
        self._rate: RateMeter | None = None

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
        if settings.scanners:
            log.warning(
                "serial scanners %s are configured, but this build does not read serial "
                "scanners yet: their scans are not collected",
                ", ".join(scanner.name for scanner in settings.scanners),
            )
        readers = self._readers if self._readers is not None else llrp_readers(settings)
        self.readers = readers
        for tracker in self.trackers:
            if tracker.reader not in readers:
                log.warning(
                    "portal %s: reader %r is not running; the portal sees nothing",
                    tracker.read_point,
                    tracker.reader,
                )
        buffer = settings.buffer
        client_id = (settings.mqtt.client_id or f"stockgate-edge-{self.gateway}")[:MAX_CLIENT_ID]
        loop = asyncio.get_running_loop()
        self._rate = RateMeter(loop.time())
        async with (
            Outbox.open(
                buffer.path,
                self.gateway,
                commit_interval_ms=buffer.commit_interval_ms,
                max_events=buffer.max_events,
            ) as outbox,
            MqttClient(settings.mqtt, client_id, will=last_will(self.site, self.gateway)) as client,
        ):
            self._outbox = outbox
            publisher = Publisher(
                outbox,
                client,
                site=self.site,
                gateway=self.gateway,
                batch_size=buffer.batch_size,
                max_in_flight=buffer.max_in_flight,
                resend_after_s=buffer.resend_after_s,
            )
            reporter = StatusReporter(
                client,
                site=self.site,
                gateway=self.gateway,
                interval_s=settings.status.interval_s,
                snapshot=self.status,
            )
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
                    for name, reader in readers.items():
                        await stack.enter_async_context(reader)
                        log.info("reader %s started", name)
                    async with asyncio.TaskGroup() as tasks:
                        running = [
                            tasks.create_task(self._read(name, reader), name=f"reader:{name}")
                            for name, reader in readers.items()
                        ]
                        running.append(tasks.create_task(self._tick(), name="pass-tick"))
                        running.append(tasks.create_task(publisher.run(), name="publisher"))
                        running.append(tasks.create_task(reporter.run(), name="status"))
                        await (stop.wait() if stop is not None else loop.create_future())
                        log.info("edge agent %s stopping", self.gateway)
                        for task in running:
                            task.cancel()
            finally:
                # Readers are closed: nothing new arrives. Keep what was read.
                self._store(p for tracker in self.trackers for p in tracker.drain())
                try:
                    await outbox.flush()
                except OutboxError as err:
                    log.error("edge agent: final commit failed: %s", err)
                await reporter.publish_offline()
                log.info(
                    "edge agent %s stopped: %d reads, %d passes stored, %d events held",
                    self.gateway,
                    self.reads,
                    self.passes,
                    outbox.depth(),
                )
                self._outbox = None

    async def _read(self, name: str, reader: Reader) -> None:
        trackers = self._by_reader.get(name, [])
        clock = asyncio.get_running_loop().time
        async for item in reader:
            if isinstance(item, TagRead):
                self.reads += 1
                now = clock()
                seen = False
                for tracker in trackers:
                    if tracker.observe(item, now):
                        seen = True
                if not seen:
                    self.ignored_reads += 1
            else:
                self._reader_event(name, item)
        log.warning("reader %s: its read stream ended", name)

    def _reader_event(self, name: str, event: ReaderEvent) -> None:
        self.reader_events[event.kind] += 1
        if event.kind == "state":
            log.info("reader %s: %s %s", name, event.state, event.detail)
        elif event.kind == "antenna":
            if event.connected is False:
                log.warning("reader %s: antenna %s disconnected", name, event.antenna)
            else:
                log.info("reader %s: antenna %s connected", name, event.antenna)
        elif event.kind in ("exception", "decode_error"):
            self._last_error[name] = f"{event.kind}: {event.detail}"[:1000]
            log.warning("reader %s: %s: %s", name, event.kind, event.detail)
        else:
            log.debug("reader %s: %s %s", name, event.kind, event.detail)

    async def _tick(self) -> None:
        clock = asyncio.get_running_loop().time
        while True:
            await asyncio.sleep(TICK_S)
            now = clock()
            for tracker in self.trackers:
                ended = tracker.tick(now)
                if ended:
                    self._store(ended)

    def _store(self, passes: Iterable[Pass]) -> None:
        outbox = self._outbox
        if outbox is None:
            return
        for finished in passes:
            try:
                outbox.append(finished.to_event)
            except OutboxFull:
                # The outbox logged the alarm once; count every refusal.
                self.refused += 1
                continue
            except (IdentifierError, ValidationError) as err:
                self.bad_passes += 1
                log.warning(
                    "portal %s: pass of tag %r dropped: %s",
                    finished.read_point,
                    finished.epc_hex[:40],
                    err,
                )
                continue
            self.passes += 1

    async def status(self) -> Status:
        """The current online status of this gateway."""
        outbox = self._outbox
        depth, oldest = 0, None
        if outbox is not None:
            depth = outbox.depth()
            try:
                oldest = await outbox.oldest_age_s()
            except OutboxError as err:
                log.warning("status: %s", err)
        rate = 0.0
        if self._rate is not None:
            rate = self._rate.rate(self.reads, asyncio.get_running_loop().time())
        return Status(
            gateway=self.gateway,
            site=self.site,
            state="online",
            at=now_utc(),
            readers=[self._reader_status(n, r) for n, r in self.readers.items()][:MAX_READERS],
            buffer_depth=depth,
            buffer_full=outbox.full if outbox is not None else False,
            events_refused=self.refused,
            oldest_unacked_age_s=oldest,
            reads_per_s=round(rate, 1),
        )

    def _reader_status(self, name: str, reader: Reader) -> ReaderStatus:
        status = reader.status()
        error = self._last_error.get(name)
        if status.last_error is None and error is not None:
            status = status.model_copy(update={"last_error": error})
        return status


async def run_edge(
    settings: EdgeSettings,
    *,
    readers: Mapping[str, Reader] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the edge agent for ``settings`` until ``stop`` is set or the task is cancelled."""
    await EdgeAgent(settings, readers=readers).run(stop)
