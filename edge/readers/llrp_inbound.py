"""What comes from an LLRP reader, from a frame to the consumer's queue.

``LlrpInbound`` is one reader's receiving side; it outlives the reader's connections.
Each frame is decoded and dispatched by message type: a report becomes ``TagRead``
values (and counts in the read rates), a keepalive is acknowledged, a notification
becomes ``ReaderEvent`` values (antenna changes, reader exceptions, GPI changes), an
ERROR_MESSAGE a ``ReaderFault``. A message sllurp cannot decode, or a report of a shape
we do not expect, is logged and reported as a ``DecodeFailed`` event, and reading goes
on. The connection state (``set_state``) goes out the same way, as ``StateChanged``.

Reads and events leave through a bounded queue; when it is full the caller waits, so
the reader's TCP send buffer fills up instead of reads being dropped (only while the
reader stops are they dropped, and counted in the log).

It also keeps what the reader has said of itself, for the reader's ``status()``: its
capabilities at the last handshake, its antennas' states (GET_READER_CONFIG at each
connect, then AntennaEvents) and how many exception events it reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from edge.rates import ReadRates
from edge.readers import llrp_rospec as requests
from edge.readers.llrp_codec import Decoded, Frame, LlrpDecodeError
from edge.readers.llrp_link import LlrpLink, decode_frame
from edge.readers.llrp_reports import (
    MAX_DETAIL,
    LlrpError,
    LlrpReportError,
    LlrpStatusError,
    ReaderCapabilities,
    check_status,
    notification,
    tag_reads,
)
from edge.readers.types import (
    AntennaChanged,
    DecodeFailed,
    DeviceLog,
    OutputQueue,
    ReaderEvent,
    ReaderFault,
    ReaderOutput,
    ReaderState,
    StateChanged,
)

__all__ = [
    "DECODE_ERRORS_LOGGED",
    "ERROR_MESSAGE",
    "MAX_ERROR_TEXT",
    "NOTIFICATION",
    "LlrpInbound",
]

DECODE_ERRORS_LOGGED: Final = 10
"""Decode errors logged one by one per connection; after that every 100th is."""
MAX_ERROR_TEXT: Final = 1000
"""Longest ``last_error`` kept for the status."""

REPORT: Final = "RO_ACCESS_REPORT"
KEEPALIVE: Final = "KEEPALIVE"
NOTIFICATION: Final = "READER_EVENT_NOTIFICATION"
ERROR_MESSAGE: Final = "ERROR_MESSAGE"
SET_READER_CONFIG_RESPONSE: Final = "SET_READER_CONFIG_RESPONSE"


class LlrpInbound:
    """One reader's receiving side: messages handled, reads and events queued.

    Args:
        name: the reader's name; its reads and events carry it.
        queue_size: reads and events held for the consumer before the caller waits.
        log: the reader's log.
    """

    def __init__(self, name: str, queue_size: int, log: DeviceLog) -> None:
        self.name = name
        self.log = log
        self.queue: OutputQueue[ReaderOutput] = OutputQueue(queue_size)
        """What the consumer reads, in order."""
        self.stopping = False
        """The reader is stopping: a full queue drops instead of waiting."""
        self.state: ReaderState = "disconnected"
        self.last_error: str | None = None
        self.rates = ReadRates(now=time.monotonic())
        self.antennas: dict[int, bool] = {}
        """Antenna id -> connected, as the reader last said."""
        self.exceptions = 0
        """Reader exception events (ReaderExceptionEvent, report buffer trouble) so far."""
        self.capabilities: ReaderCapabilities | None = None
        """What the reader said of itself at the last handshake."""

    @property
    def antennas_disconnected(self) -> list[int]:
        """Antennas the reader last reported as disconnected."""
        return sorted(a for a, up in self.antennas.items() if not up)

    # --- incoming messages --------------------------------------------------------

    async def handle(self, link: LlrpLink, frame: Frame) -> None:
        """Decode and dispatch one frame (an undecodable one is reported and skipped)."""
        try:
            decoded = await decode_frame(frame)
        except LlrpDecodeError as err:
            await self.decode_error(link, frame, err)
            return
        await self.dispatch(link, decoded)

    async def dispatch(self, link: LlrpLink, decoded: Decoded) -> None:
        """Act on one decoded message by its type; one of a shape we do not expect counts
        as undecodable (reported, skipped), and the connection goes on.

        Raises:
            LlrpConnectionLost, LlrpWatchdogError: acknowledging a keepalive failed.
        """
        try:
            await self._act(link, decoded)
        except LlrpReportError as err:
            await self.decode_error(link, decoded.frame, err)

    async def _act(self, link: LlrpLink, decoded: Decoded) -> None:
        name = decoded.name
        if name == REPORT:
            await self._report(link, decoded)
        elif name == KEEPALIVE:
            await link.send(requests.KEEPALIVE_ACK, decoded.frame.msg_id)
        elif name == NOTIFICATION:
            note = notification(self.name, decoded.body)
            if note.closing:
                link.closing = True
                self.log.info("reader announced it is closing the connection")
            if note.connection_attempt is not None:
                self.log.warning("reader reports a connection attempt: %s", note.connection_attempt)
            self.note(note.events)
            await self.emit_all(note.events)
        elif name == SET_READER_CONFIG_RESPONSE:
            # Only GPO writes send SET_READER_CONFIG outside the handshake.
            try:
                check_status(name, decoded.body)
            except LlrpStatusError as err:
                self.log.warning("reader refused a GPO write: %s", err)
        elif name == ERROR_MESSAGE:
            try:
                check_status(ERROR_MESSAGE, decoded.body)
            except LlrpStatusError as err:
                self.log.warning("reader sent %s", err)
                await self.emit_one(ReaderFault(self.name, str(err)[:MAX_DETAIL]))
        else:
            self.log.debug("ignoring %s (message id %d)", name, decoded.frame.msg_id)

    async def _report(self, link: LlrpLink, decoded: Decoded) -> None:
        reads, skipped = tag_reads(self.name, decoded.body, time.time_ns() // 1000)
        if skipped:
            total = skipped + len(reads)
            problem = LlrpError(f"{skipped} of {total} TagReportData entries carry no EPC")
            await self.decode_error(link, decoded.frame, problem)
        if reads:
            self.rates.add(reads, time.monotonic())
            await self.emit_all(reads)

    async def decode_error(self, link: LlrpLink, frame: Frame, err: Exception) -> None:
        """Log (the first few per connection, then every 100th) and report a bad message."""
        link.decode_errors += 1
        count = link.decode_errors
        if count <= DECODE_ERRORS_LOGGED or count % 100 == 0:
            self.log.warning(
                "cannot decode LLRP message type %d (%d bytes), skipped (%d so far): %s",
                frame.msg_type,
                len(frame.raw),
                count,
                err,
            )
        detail = f"message type {frame.msg_type}, {len(frame.raw)} bytes: {err}"
        await self.emit_one(DecodeFailed(self.name, detail[:MAX_DETAIL]))

    def note(self, events: Iterable[ReaderEvent]) -> None:
        """Keep antenna states and count exceptions for ``status()``."""
        for event in events:
            if isinstance(event, AntennaChanged):
                self.antennas[event.antenna] = event.connected
            elif isinstance(event, ReaderFault):
                self.exceptions += 1

    # --- output -------------------------------------------------------------------

    async def emit_all(self, items: Iterable[ReaderOutput]) -> None:
        """Queue reads and events for the consumer, waiting while the queue is full."""
        queue = self.queue
        dropped = 0
        for item in items:
            if not queue.full():
                queue.put_nowait(item)
            elif self.stopping:
                dropped += 1
            else:
                await queue.put(item)
        if dropped:
            # Only while stopping: the consumer is going away too, and a stop must not hang.
            self.log.warning("output queue full while stopping: %d reads/events dropped", dropped)

    async def emit_one(self, item: ReaderOutput) -> None:
        """Queue one read or event (see ``emit_all``)."""
        await self.emit_all((item,))

    async def set_state(self, state: ReaderState, detail: str) -> None:
        """Enter ``state``: log it, keep an error for the status, tell the consumer."""
        self.state = state
        if state == "error":
            self.last_error = detail[:MAX_ERROR_TEXT]
            self.log.warning("error: %s", detail)
        else:
            self.log.info("%s (%s)", state, detail)
        await self.emit_one(StateChanged(self.name, state, detail=detail[:MAX_DETAIL]))

    def close(self, last: ReaderOutput) -> None:
        """No more output after ``last``: the consumer's iteration ends once it is read."""
        self.queue.close(last)
