"""LLRP reader client: sllurp's message codec under an asyncio connection of our own.

One task per reader owns the connection: connect, handshake, read, and on any failure
wait (capped exponential backoff with jitter) and start again, forever. Every
connection gets a new ``LlrpFramer``, so nothing of a dropped connection reaches the
next one. A keepalive watchdog drops a connection on which nothing has arrived for
three keepalive intervals (a reader that vanished without closing TCP). A message
sllurp cannot decode is logged and reported as a ``ReaderEvent`` and reading goes on;
only a framing error (an impossible header: the stream is lost) drops the connection.

Reads leave through a bounded queue; when it is full the read loop waits, so the
reader's TCP send buffer fills up instead of reads being dropped.

Health. The client keeps what the reader said about its antennas (GET_READER_CONFIG at
each connect, then AntennaEvents) and counts reader exception events; ``status()``
reports both. GPI inputs given at construction are switched on at each handshake (their
level changes come out as ``gpi`` ReaderEvents); ``write_gpo`` sets outputs while the
reader is connected. Ports beyond what the reader says it has are left out with a warning
instead of failing the handshake, so a wrong port number never stops the reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import NoReturn

from edge.config import LlrpSettings
from edge.errors import ReaderError
from edge.rates import ReadRates
from edge.readers import llrp_rospec as requests
from edge.readers.llrp_codec import (
    Decoded,
    Frame,
    LlrpDecodeError,
    LlrpFramer,
    LlrpFramingError,
    decode,
)
from edge.readers.llrp_reports import (
    MAX_DETAIL,
    LlrpError,
    LlrpStatusError,
    ReaderCapabilities,
    antenna_states,
    capabilities,
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
from plumbing.backoff import Backoff
from wire.models import ReaderStatus

__all__ = [
    "LlrpConnectionLost",
    "LlrpError",
    "LlrpHandshakeError",
    "LlrpReader",
    "LlrpWatchdogError",
]

logger = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
"""Bytes asked of the socket per read; a busy reader's reports arrive many per read."""
WATCHDOG_KEEPALIVES = 3
"""Keepalive intervals without any message before the connection counts as dead."""
STOP_TIMEOUT_S = 2.0
"""How long a polite stop (DELETE_ROSPEC, then close) may take before we just close."""
DECODE_ERRORS_LOGGED = 10
"""Decode errors logged one by one per connection; after that every 100th is."""
MAX_ERROR_TEXT = 1000

_REPORT = "RO_ACCESS_REPORT"
_KEEPALIVE = "KEEPALIVE"
_NOTIFICATION = "READER_EVENT_NOTIFICATION"
_ERROR_MESSAGE = "ERROR_MESSAGE"
_ERROR_MESSAGE_TYPE = 100
_DELETE_ROSPEC_RESPONSE_TYPE = 31
_SET_READER_CONFIG_RESPONSE = "SET_READER_CONFIG_RESPONSE"


class LlrpHandshakeError(LlrpError):
    """The reader refused the connection or answered a handshake request wrongly."""


class LlrpConnectionLost(LlrpError):
    """The reader closed or reset the TCP connection."""


class LlrpWatchdogError(LlrpError):
    """Nothing arrived from the reader for longer than the watchdog allows."""


class _Link:
    """One TCP connection to the reader, with its own framing state.

    A new one is made for every connection, which is what keeps a partial message of a
    dropped connection from being glued to the next connection's first message.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, send_timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._send_timeout = send_timeout
        self._framer = LlrpFramer()
        self._pending: deque[Frame] = deque()
        self._broken: LlrpFramingError | None = None
        self._ids = itertools.count(1)
        self.idle_limit: float | None = None
        """Seconds without a byte before the link counts as dead; None until keepalives run."""
        self.ready = False
        """The handshake completed: the reader runs our ROSpec."""
        self.closing = False
        self.decode_errors = 0

    async def next_frame(self) -> Frame:
        """The next whole frame from the reader.

        Raises:
            LlrpConnectionLost: EOF or reset.
            LlrpWatchdogError: nothing for ``idle_limit`` seconds.
            LlrpFramingError: the stream cannot be framed; frames before the bad
                header are returned first.
        """
        while not self._pending:
            if self._broken is not None:
                raise self._broken
            try:
                async with asyncio.timeout(self.idle_limit):
                    data = await self._reader.read(READ_CHUNK)
            except TimeoutError as err:
                raise LlrpWatchdogError(
                    f"nothing from the reader for {self.idle_limit:g} s (keepalive watchdog)"
                ) from err
            except ConnectionError as err:
                raise LlrpConnectionLost(f"connection lost: {err}") from err
            if not data:
                raise LlrpConnectionLost(
                    "reader closed the connection"
                    + (" (it announced ConnectionCloseEvent)" if self.closing else "")
                )
            try:
                for frame in self._framer.feed(data):
                    self._pending.append(frame)
            except LlrpFramingError as err:
                self._broken = err
        return self._pending.popleft()

    async def send(self, request: requests.Request, msg_id: int | None = None) -> None:
        """Encode and send one request.

        Raises:
            LlrpConnectionLost: the socket is gone.
        """
        data = request.encode(next(self._ids) if msg_id is None else msg_id)
        try:
            self._writer.write(data)
            async with asyncio.timeout(self._send_timeout):
                await self._writer.drain()
        except ConnectionError as err:
            raise LlrpConnectionLost(f"connection lost sending {request.name}: {err}") from err
        except TimeoutError as err:
            # The reader does not read what we send: as dead as one that sends nothing.
            raise LlrpWatchdogError(
                f"sending {request.name} stalled for {self._send_timeout:g} s"
            ) from err

    @property
    def usable(self) -> bool:
        return self._broken is None and not self._writer.is_closing()

    def abort(self) -> None:
        self._writer.transport.abort()

    async def close(self, timeout: float) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(timeout):
                await self._writer.wait_closed()
        self._writer.transport.abort()


INLINE_DECODE_BYTES = 16 * 1024
"""Frames up to this size are decoded on the event loop (a keepalive or a report of a few
hundred tags costs well under a millisecond). Larger ones are decoded in a worker thread:
sllurp's decoder is pure Python and takes about 1.5 s per MiB, which on the loop would
stall outbox commits, MQTT keepalives and the other readers."""


async def decode_frame(frame: Frame) -> Decoded:
    """``decode`` on the loop for small frames, in the loop's default executor for large.

    Frames of one connection are decoded one at a time, in order (the caller awaits each).

    Raises:
        LlrpDecodeError: sllurp could not decode it.
    """
    if len(frame.raw) <= INLINE_DECODE_BYTES:
        return decode(frame)
    return await asyncio.to_thread(decode, frame)


class LlrpReader:
    """An RFID reader over LLRP: an async context manager and an async iterator of reads.

    ``async with LlrpReader(settings) as reader:`` starts one task that connects,
    configures the reader and reads from it, reconnecting forever; ``async for item in
    reader`` yields ``TagRead`` and ``ReaderEvent`` values until the reader is stopped.

    Args:
        settings: the ``[[llrp]]`` table of this reader.
        queue_size: reads and events held for the consumer before the read loop waits.
        gpi_ports: GPI inputs to switch on (photo-eyes); their changes become events.
    """

    def __init__(
        self,
        settings: LlrpSettings,
        *,
        queue_size: int = 10_000,
        gpi_ports: Iterable[int] = (),
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._settings = settings
        self.name = settings.name
        self.gpi_ports = tuple(sorted(set(gpi_ports)))
        self._antennas: dict[int, bool] = {}
        """Antenna id -> connected, as the reader last said."""
        self.exceptions = 0
        """Reader exception events (ReaderExceptionEvent, report buffer trouble) so far."""
        self.gpo_writes = 0
        """GPO writes sent to the reader."""
        self._queue: OutputQueue[ReaderOutput] = OutputQueue(queue_size)
        self._log = DeviceLog(logger, "reader", settings.name)
        self._state: ReaderState = "disconnected"
        self._last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._link: _Link | None = None
        self._stopping = False
        self._rates = ReadRates(now=time.monotonic())
        self.capabilities: ReaderCapabilities | None = None
        """What the reader said of itself at the last handshake."""

    # --- public interface ---------------------------------------------------------

    async def __aenter__(self) -> LlrpReader:
        if self._task is not None:
            raise RuntimeError(f"LLRP reader {self.name} was already started")
        self._task = asyncio.create_task(self._run(), name=f"llrp-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        task = self._task
        try:
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
                if not task.cancelled() and task.exception() is not None:
                    self._log.error("connection task ended with %r", task.exception())
            link, self._link = self._link, None
            if link is not None:
                await self._goodbye(link)
        finally:
            if self._link is not None:
                self._link.abort()
            self._state = "disconnected"
            self._queue.close(StateChanged(self.name, "disconnected", detail="stopped"))

    def __aiter__(self) -> LlrpReader:
        return self

    async def __anext__(self) -> ReaderOutput:
        return await self._queue.next()

    def status(self) -> ReaderStatus:
        """The reader's state and read rates, for the gateway status message."""
        rates = self._rates.per_antenna(time.monotonic())
        return ReaderStatus(
            name=self.name,
            kind="llrp",
            state=self._state,
            last_error=self._last_error,
            reads_per_s=round(sum(rates.values()), 3),
            antenna_reads_per_s={str(a): round(r, 3) for a, r in sorted(rates.items())},
            antennas_disconnected=self.antennas_disconnected,
            exceptions=self.exceptions,
        )

    @property
    def antennas_disconnected(self) -> list[int]:
        """Antennas the reader last reported as disconnected."""
        return sorted(a for a, up in self._antennas.items() if not up)

    async def write_gpo(self, writes: Sequence[tuple[int, bool]]) -> bool:
        """Set GPO outputs, ``(port, high)`` pairs; False when the reader cannot take it now.

        Sent on the live connection without waiting for the answer (the read loop checks
        the response's status and logs a refusal). Ports beyond the reader's GPO count are
        left out with a warning.
        """
        link = self._link
        if link is None or not link.ready or not link.usable or self._stopping:
            return False
        caps = self.capabilities
        usable = [(p, h) for p, h in writes if caps is None or p <= caps.gpos]
        if len(usable) != len(writes):
            skipped = sorted({p for p, _ in writes} - {p for p, _ in usable})
            gpos = caps.gpos if caps is not None else "?"
            self._log.warning("GPO ports %s are beyond the reader's %s GPOs", skipped, gpos)
        if not usable:
            return False
        try:
            await link.send(requests.gpo_write(usable))
        except (LlrpError, OSError) as err:
            self._log.info("GPO write not sent: %s", err)
            return False
        self.gpo_writes += 1
        return True

    def retune(self, settings: LlrpSettings) -> None:
        """Run with ``settings`` from now on (a remote retune of this reader).

        The connection in use is dropped so that the reconnect, a moment later, sends the
        ROSpec the new settings make (antennas, EPC mask, reports...). Tags still in the
        field are read again then; what was read before stays with the read points.

        Raises:
            ValueError: the settings are for another reader or another address (those
                are set in the local file only).
        """
        current = self._settings
        if (settings.name, settings.host, settings.port) != (
            current.name,
            current.host,
            current.port,
        ):
            raise ValueError(f"reader {self.name}: a retune cannot change its name or address")
        self._settings = settings
        link = self._link
        if link is not None and not self._stopping:
            self._log.info("settings changed: reconnecting to configure the reader again")
            link.abort()

    # --- connection loop ----------------------------------------------------------

    async def _run(self) -> None:
        settings = self._settings
        backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        while True:
            await self._set_state("connecting", f"{settings.host}:{settings.port}")
            try:
                await self._session(backoff)
            except LlrpConnectionLost as err:
                await self._set_state("disconnected", str(err))
            except (ReaderError, OSError) as err:
                await self._set_state("error", str(err))
            except Exception as err:  # noqa: BLE001
                # A reader must never go quiet: a bug met on one connection is logged
                # with its traceback and the next connection is tried.
                self._log.exception("unexpected error on the connection")
                await self._set_state("error", f"internal error: {err!r}")
            delay = backoff.next_delay()
            self._log.info("reconnecting in %.2f s", delay)
            await asyncio.sleep(delay)

    async def _session(self, backoff: Backoff) -> NoReturn:
        settings = self._settings
        where = f"{settings.host}:{settings.port}"
        try:
            async with asyncio.timeout(settings.connect_timeout_s):
                stream_reader, writer = await asyncio.open_connection(
                    settings.host, settings.port, limit=READ_CHUNK
                )
        except TimeoutError as err:
            raise LlrpHandshakeError(
                f"connecting to {where} timed out after {settings.connect_timeout_s:g} s"
            ) from err
        except OSError as err:
            raise LlrpHandshakeError(f"cannot connect to {where}: {err}") from err
        link = _Link(stream_reader, writer, settings.connect_timeout_s)
        self._link = link
        try:
            await self._handshake(link)
            backoff.reset()
            caps = self.capabilities
            await self._set_state(
                "connected",
                f"{where}, model {caps.model}, firmware {caps.firmware}" if caps else where,
            )
            while True:
                await self._handle(link, await link.next_frame())
        finally:
            # On a stop the link is left to __aexit__ for a polite goodbye.
            if not self._stopping:
                self._link = None
                link.abort()

    async def _handshake(self, link: _Link) -> None:
        settings = self._settings
        await self._connection_attempt(link)
        caps = capabilities((await self._request(link, requests.GET_READER_CAPABILITIES)).body)
        # Checked before anything is changed on the reader, so a bad config changes nothing.
        add_rospec = requests.add_rospec(settings, caps)
        plan = requests.rf_plan(
            settings, caps, requests.inventory_antennas(settings.antennas, caps.max_antennas)
        )
        self.capabilities = caps
        self._log.info(
            "reader model %s (manufacturer %s), firmware %s, %d antennas; asking for %s",
            caps.model,
            caps.manufacturer,
            caps.firmware,
            caps.max_antennas,
            plan.describe(),
        )
        if plan.impinj:
            try:
                await self._request(link, requests.IMPINJ_ENABLE_EXTENSIONS)
            except LlrpStatusError as err:
                # Older firmware says Impinj but refuses the extensions: standard fields do.
                if settings.search_mode != "reader_default":
                    raise requests.LlrpConfigError(
                        f"reader {self.name}: search_mode {settings.search_mode!r} needs "
                        f"Impinj extensions and the reader refused them: {err}"
                    ) from err
                self._log.warning("Impinj extensions refused (%s): standard fields only", err)
                settings = settings.model_copy(update={"impinj_extensions": False})
                add_rospec = requests.add_rospec(settings, caps)
        config = await self._request(link, requests.GET_READER_CONFIG)
        states = antenna_states(config.body)
        if states:
            self._antennas = states
            down = self.antennas_disconnected
            if down:
                self._log.warning("antennas %s are disconnected", down)
        gpis = [port for port in self.gpi_ports if port <= caps.gpis]
        if len(gpis) != len(self.gpi_ports):
            problem = (
                f"GPI ports {sorted(set(self.gpi_ports) - set(gpis))} are beyond the "
                f"reader's {caps.gpis} GPIs: those photo-eyes are not watched"
            )
            self._log.warning("%s", problem)
            await self._emit_one(ReaderFault(self.name, problem))
        await self._request(link, requests.set_reader_config(settings.keepalive_s, gpis))
        link.idle_limit = WATCHDOG_KEEPALIVES * settings.keepalive_s
        await link.send(requests.ENABLE_EVENTS_AND_REPORTS)
        await self._request(link, requests.DELETE_ALL_ACCESSSPECS)
        await self._request(link, requests.DELETE_ALL_ROSPECS)
        await self._request(link, add_rospec)
        await self._request(link, requests.ENABLE_OUR_ROSPEC)
        link.ready = True

    async def _connection_attempt(self, link: _Link) -> None:
        """Wait for the reader's opening READER_EVENT_NOTIFICATION (the reader speaks first)."""
        timeout = self._settings.connect_timeout_s
        try:
            async with asyncio.timeout(timeout):
                frame = await link.next_frame()
        except TimeoutError as err:
            raise LlrpHandshakeError(
                f"no ConnectionAttemptEvent from the reader within {timeout:g} s"
            ) from err
        try:
            decoded = await decode_frame(frame)
        except LlrpDecodeError as err:
            raise LlrpHandshakeError(f"cannot decode the reader's first message: {err}") from err
        if decoded.name != _NOTIFICATION:
            raise LlrpHandshakeError(
                f"reader sent {decoded.name} instead of a ConnectionAttemptEvent"
            )
        note = notification(self.name, decoded.body)
        if note.connection_attempt is None:
            raise LlrpHandshakeError(
                "reader's first READER_EVENT_NOTIFICATION has no ConnectionAttemptEvent"
            )
        if note.connection_attempt != "Success":
            raise LlrpHandshakeError(f"reader refused the connection: {note.connection_attempt}")
        self._note(note.events)
        await self._emit_all(note.events)

    async def _request(self, link: _Link, request: requests.Request) -> Decoded:
        """Send a request and wait for its response, handling whatever comes in between.

        Raises:
            LlrpHandshakeError: no response in time, or one that cannot be decoded.
            LlrpStatusError: the response (or an ERROR_MESSAGE) is not Success.
        """
        timeout = self._settings.connect_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await link.send(request)
                while True:
                    frame = await link.next_frame()
                    try:
                        decoded = await decode_frame(frame)
                    except LlrpDecodeError as err:
                        await self._decode_error(link, frame, err)
                        continue
                    if decoded.name == request.response:
                        check_status(request.response, decoded.body)
                        return decoded
                    if decoded.name == _ERROR_MESSAGE:
                        check_status(f"ERROR_MESSAGE in reply to {request.name}", decoded.body)
                    await self._dispatch(link, decoded)
        except TimeoutError as err:
            raise LlrpHandshakeError(f"no {request.response} within {timeout:g} s") from err

    async def _goodbye(self, link: _Link) -> None:
        """DELETE_ROSPEC 0 and close, bounded by STOP_TIMEOUT_S; reads on the way still count."""
        try:
            if link.ready and link.usable:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await link.send(requests.DELETE_ALL_ROSPECS)
                    while True:
                        frame = await link.next_frame()
                        if frame.msg_type == _DELETE_ROSPEC_RESPONSE_TYPE:
                            break
                        await self._handle(link, frame)
        except (TimeoutError, OSError, ReaderError) as err:
            self._log.info("no answer to DELETE_ROSPEC on stop: %s", str(err) or repr(err))
        finally:
            await link.close(STOP_TIMEOUT_S / 4)
            self._log.info("stopped")

    # --- incoming messages --------------------------------------------------------

    async def _handle(self, link: _Link, frame: Frame) -> None:
        try:
            decoded = await decode_frame(frame)
        except LlrpDecodeError as err:
            await self._decode_error(link, frame, err)
            return
        await self._dispatch(link, decoded)

    async def _dispatch(self, link: _Link, decoded: Decoded) -> None:
        name = decoded.name
        if name == _REPORT:
            await self._report(link, decoded)
        elif name == _KEEPALIVE:
            await link.send(requests.KEEPALIVE_ACK, decoded.frame.msg_id)
        elif name == _NOTIFICATION:
            note = notification(self.name, decoded.body)
            if note.closing:
                link.closing = True
                self._log.info("reader announced it is closing the connection")
            if note.connection_attempt is not None:
                self._log.warning(
                    "reader reports a connection attempt: %s", note.connection_attempt
                )
            self._note(note.events)
            await self._emit_all(note.events)
        elif name == _SET_READER_CONFIG_RESPONSE:
            # Only GPO writes send SET_READER_CONFIG outside the handshake.
            try:
                check_status(name, decoded.body)
            except LlrpStatusError as err:
                self._log.warning("reader refused a GPO write: %s", err)
        elif name == _ERROR_MESSAGE:
            try:
                check_status(_ERROR_MESSAGE, decoded.body)
            except LlrpError as err:
                self._log.warning("reader sent %s", err)
                await self._emit_one(ReaderFault(self.name, str(err)[:MAX_DETAIL]))
        else:
            self._log.debug("ignoring %s (message id %d)", name, decoded.frame.msg_id)

    async def _report(self, link: _Link, decoded: Decoded) -> None:
        try:
            reads, skipped = tag_reads(self.name, decoded.body, time.time_ns() // 1000)
        except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as err:
            # sllurp gave a shape we do not expect: the frame counts as undecodable.
            await self._decode_error(link, decoded.frame, err)
            return
        if skipped:
            total = skipped + len(reads)
            problem = LlrpError(f"{skipped} of {total} TagReportData entries carry no EPC")
            await self._decode_error(link, decoded.frame, problem)
        if reads:
            self._rates.add(reads, time.monotonic())
            await self._emit_all(reads)

    async def _decode_error(self, link: _Link, frame: Frame, err: Exception) -> None:
        link.decode_errors += 1
        count = link.decode_errors
        if count <= DECODE_ERRORS_LOGGED or count % 100 == 0:
            self._log.warning(
                "cannot decode LLRP message type %d (%d bytes), skipped (%d so far): %s",
                frame.msg_type,
                len(frame.raw),
                count,
                err,
            )
        detail = f"message type {frame.msg_type}, {len(frame.raw)} bytes: {err}"
        await self._emit_one(DecodeFailed(self.name, detail[:MAX_DETAIL]))

    def _note(self, events: Iterable[ReaderEvent]) -> None:
        """Keep antenna states and count exceptions for ``status()``."""
        for event in events:
            if isinstance(event, AntennaChanged):
                self._antennas[event.antenna] = event.connected
            elif isinstance(event, ReaderFault):
                self.exceptions += 1

    # --- output -------------------------------------------------------------------

    async def _emit_all(self, items: Iterable[ReaderOutput]) -> None:
        queue = self._queue
        dropped = 0
        for item in items:
            if not queue.full():
                queue.put_nowait(item)
            elif self._stopping:
                dropped += 1
            else:
                await queue.put(item)
        if dropped:
            # Only while stopping: the consumer is going away too, and a stop must not hang.
            self._log.warning("output queue full while stopping: %d reads/events dropped", dropped)

    async def _emit_one(self, item: ReaderOutput) -> None:
        await self._emit_all((item,))

    async def _set_state(self, state: ReaderState, detail: str) -> None:
        self._state = state
        if state == "error":
            self._last_error = detail[:MAX_ERROR_TEXT]
            self._log.warning("error: %s", detail)
        else:
            self._log.info("%s (%s)", state, detail)
        await self._emit_one(StateChanged(self.name, state, detail=detail[:MAX_DETAIL]))
