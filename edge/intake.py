"""From the readers to the outbox: the edge agent's read loops.

One ``read`` task per reader takes its stream: a tag read goes to the read points
(``edge.readpoints``), a scan to its scanner's ``ScanSession`` (``edge.scanning``), a
reader event to the read points and to health (``edge.monitor``). The ``tick`` task
asks the read points every ``TICK_S`` for the passes that have ended. What ends (a
finished pass, the event a scan makes) is appended to the outbox at once; a refusal of
a full outbox, or an event that does not fit the wire contract, is counted in
``EdgeCounters`` and logged, never raised into the loops (the other readers go on).

The errors met here (a reader fault, a scan the scanner's mode cannot take, a scan the
server refused) are kept per device for the gateway's status, which shows a server's
refusal for ``REFUSAL_SHOWN_S`` over anything else (the books did not take a scan).

Hot path: per tag read, two counter updates and one call into the read points.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Final

from pydantic import ValidationError

from edge.buffer.outbox import Outbox, OutboxFull
from edge.counters import EdgeCounters
from edge.monitor import HealthMonitor
from edge.readers.port import Reader
from edge.readers.types import (
    AntennaChanged,
    DecodeFailed,
    GpiChanged,
    ReaderEvent,
    ReaderFault,
    ScanRead,
    StateChanged,
    TagRead,
)
from edge.readpoints import Finished, ReadPoints
from edge.scanning import ScanEvent, ScanSession
from wire.identifiers import IdentifierError
from wire.models import RefusedEvent

__all__ = ["REFUSAL_SHOWN_S", "TICK_S", "Intake"]

log = logging.getLogger(__name__)

TICK_S: Final = 0.1
"""How often open passes are checked for departure."""
REFUSAL_SHOWN_S: Final = 300.0
"""How long a scanner's status shows the server's refusal of one of its scans as its
``last_error`` (over any other error)."""
MAX_ERROR_TEXT: Final = 1000
"""Longest error kept per device for the status."""


def _now() -> float:
    """The agent's monotonic clock (the event loop's)."""
    return asyncio.get_running_loop().time()


class Intake:
    """The read loops of one agent, and where what they produce goes.

    Args:
        points: the read points every tag read and reader event goes to.
        sessions: the scan session of each scanner, by name.
        monitor: health, told of reader events and of the outbox's depth.
        counters: what the loops count.
    """

    def __init__(
        self,
        points: ReadPoints,
        sessions: Mapping[str, ScanSession],
        monitor: HealthMonitor,
        counters: EdgeCounters,
    ) -> None:
        self._points = points
        self._sessions = sessions
        self._monitor = monitor
        self._counters = counters
        self.outbox: Outbox | None = None
        """Where events go; None while the agent does not run (nothing is stored then)."""
        self._last_error: dict[str, str] = {}
        """Per device, the last error met in its stream."""
        self._refusals: dict[str, tuple[float, str]] = {}
        """Per scanner, when the server last refused one of its scans, and why."""

    # -- the loops --------------------------------------------------------------------

    async def read(self, name: str, reader: Reader) -> None:
        """Take ``reader``'s stream until it ends (a real reader's ends only at its stop)."""
        route = self._points.read
        counters = self._counters
        counts = counters.reads_by_reader
        clock = asyncio.get_running_loop().time
        async for item in reader:
            if isinstance(item, TagRead):
                counters.reads += 1
                counts[name] += 1
                if not route(name, item, clock()):
                    counters.ignored_reads += 1
            elif isinstance(item, ScanRead):
                self._scanned(name, item)
            else:
                self._reader_event(name, item)
        log.warning("reader %s: its read stream ended", name)

    async def tick(self) -> None:
        """Every ``TICK_S``, store the passes that have ended; until cancelled."""
        clock = asyncio.get_running_loop().time
        while True:
            await asyncio.sleep(TICK_S)
            ended = self._points.tick(clock())
            if ended:
                self.store(ended)

    def finish(self) -> None:
        """The readers are closed and nothing new arrives: keep what was read.

        The passes still open end and are stored; a count or a move a scanner left open
        is not sent, and the log says so.
        """
        self.store(self._points.drain())
        for name, session in self._sessions.items():
            if session.counted_lines:
                log.warning(
                    "scanner %s: count at %s not sent (no END before the stop): %d lines",
                    name,
                    session.location,
                    session.counted_lines,
                )
            if session.held_items:
                log.warning(
                    "scanner %s: move of %d items not sent (no destination before the stop)",
                    name,
                    session.held_items,
                )

    # -- what comes in ----------------------------------------------------------------

    def _scanned(self, name: str, read: ScanRead) -> None:
        session = self._sessions.get(name)
        if session is None:
            log.warning("scanner %s: no [[scanners]] table names it; scan ignored", name)
            return
        self._counters.scans += 1
        outcome = session.handle(read)
        if outcome.notice is not None:
            self._counters.reader_events["scan_notice"] += 1
            self._last_error[name] = f"scan: {outcome.notice}"[:MAX_ERROR_TEXT]
            log.warning("scanner %s: %s (scan %r)", name, outcome.notice, read.raw[:80])
        for event in outcome.events:
            self._store_scan(name, event)

    def _reader_event(self, name: str, event: ReaderEvent) -> None:
        self._counters.reader_events[event.kind] += 1
        now = _now()
        self._points.reader_event(event, now)
        self._monitor.reader_event(event, now)
        match event:
            case StateChanged():
                log.info("reader %s: %s %s", name, event.state, event.detail)
            case AntennaChanged(connected=False):
                log.warning("reader %s: antenna %s disconnected", name, event.antenna)
            case AntennaChanged():
                log.info("reader %s: antenna %s connected", name, event.antenna)
            case ReaderFault() | DecodeFailed():
                self._last_error[name] = f"{event.kind}: {event.detail}"[:MAX_ERROR_TEXT]
                log.warning("reader %s: %s: %s", name, event.kind, event.detail)
            case GpiChanged():
                log.info("reader %s: %s", name, event.detail)

    def refused(self, refused: RefusedEvent) -> None:
        """The server refused an event: shown as the last error of the scanners at its
        read point (in the status the gateway publishes), so the operator sees it."""
        self._counters.reader_events["refused_by_server"] += 1
        for name, session in self._sessions.items():
            if session.read_point == refused.read_point:
                text = f"refused by the server: {refused.reason}"[:MAX_ERROR_TEXT]
                self._refusals[name] = (_now(), text)
                log.warning("scanner %s: the server refused a scan: %s", name, refused.reason)

    def error_to_show(self, name: str, reported: str | None, now: float) -> str | None:
        """The error a device's status should show instead of ``reported`` (its own
        ``last_error``), or None to leave it: a fresh refusal by the server first, else
        the last error of its stream when the device reports none."""
        refusal = self._refusals.get(name)
        if refusal is not None and now - refusal[0] < REFUSAL_SHOWN_S:
            # What the operator most needs to see: the books did not take a scan.
            return refusal[1]
        if reported is None:
            return self._last_error.get(name)
        return None

    # -- what goes out ----------------------------------------------------------------

    def store(self, passes: Iterable[Finished]) -> None:
        """Append the events of finished passes to the outbox, then check its depth."""
        outbox = self.outbox
        if outbox is None:
            return
        try:
            self._append(passes, outbox)
        finally:
            self._monitor.check_depth(outbox.depth(), outbox.full)

    def _append(self, passes: Iterable[Finished], outbox: Outbox) -> None:
        counters = self._counters
        for finished in passes:
            try:
                outbox.append(finished.to_event)
            except OutboxFull:
                # The outbox logged the alarm once; count every refusal.
                counters.refused += 1
                continue
            except (IdentifierError, ValidationError) as err:
                counters.bad_passes += 1
                log.warning(
                    "read point %s: event of tag %r dropped: %s",
                    finished.read_point,
                    finished.epc_hex[:40],
                    err,
                )
                continue
            counters.passes += 1

    def _store_scan(self, name: str, event: ScanEvent) -> None:
        outbox = self.outbox
        if outbox is None:
            return
        try:
            outbox.append(event.to_event)
        except OutboxFull:
            self._counters.refused += 1
            return
        except ValidationError as err:
            # A scan that parsed but does not fit the wire contract: a bug, said loudly.
            self._counters.reader_events["scan_refused"] += 1
            log.error("scanner %s: %s event not stored: %s", name, event.biz_step, err)
            return
        self._counters.scan_events += 1
