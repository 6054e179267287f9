"""A scripted fake LLRP reader for tests: the reader side of the protocol on 127.0.0.1.

It is the I/O port of the edge's ``LlrpReader`` and nothing more (the full reader
simulator is ``reader.ReaderSimulator``; ``probe.LlrpProbe`` is the same kind of tool from
the client's side): it greets each client with a ConnectionAttemptEvent, answers each
request with its response and an LLRPStatus (Success unless told otherwise), never
answers ENABLE_EVENTS_AND_REPORTS, sends KEEPALIVE at the interval SET_READER_CONFIG
asks for, and on command pushes tag reports, reader events, KEEPALIVEs or raw bytes,
drops the connection (mid-message if asked) or goes silent with TCP left open.

Everything it sends is encoded by the simulator's encoders (``llrp_encode``,
``report_encoder``); requests are read with sllurp's parameter decoders
(``request_params``) or the simulator's request parser (``gpo_writes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

from sllurp.llrp_proto import decode_all_parameters

from edge.readers.llrp_codec import HEADER_LEN, Frame, LlrpFramer, LlrpFramingError
from firmware_sim.llrp_encode import (
    encode_capabilities_response,
    encode_connection_attempt,
    encode_error_message,
    encode_keepalive,
    encode_reader_event,
    encode_response,
    message,
)
from firmware_sim.llrp_requests import SetReaderConfig, parse_request
from firmware_sim.llrp_types import (
    RESPONSE_TYPES,
    CapabilitySet,
    ConnectionAttempt,
    ContentSelector,
    MsgType,
    Status,
    StatusCode,
    TagReportEntry,
)
from firmware_sim.profile import ReaderProfile
from firmware_sim.report_encoder import ReportEncoder
from plumbing.streams import listen

FAKE_PROFILE: Final = ReaderProfile(firmware="1.0.0-fake", receive_sensitivity_db=())
"""What the fake says it is: an Impinj (so a client asks for the extensions, which the fake
refuses like older firmware) with 4 GPIs and 4 GPOs and no sensitivity table."""
READ_CHUNK: Final = 65536
STOP_TIMEOUT_S: Final = 5.0

_FIXED_FIELDS: Final[Mapping[int, int]] = {
    MsgType.GET_READER_CAPABILITIES: 1,
    MsgType.GET_READER_CONFIG: 7,
    MsgType.SET_READER_CONFIG: 1,
    MsgType.ADD_ROSPEC: 0,
    MsgType.DELETE_ROSPEC: 4,
    MsgType.ENABLE_ROSPEC: 4,
    MsgType.DELETE_ACCESSSPEC: 4,
}
"""Bytes of fixed fields before the parameters, per request type ``request_params`` reads."""

_REPEATED: Final = [
    "AISpec",
    "EventNotificationState",
    "AntennaConfiguration",
    "AntennaProperties",
]
_NO_RESPONSE: Final = (MsgType.ENABLE_EVENTS_AND_REPORTS, MsgType.KEEPALIVE_ACK)


@dataclass(frozen=True, slots=True)
class FakeTag:
    """One TagReportData entry; None leaves the field out, as some readers do."""

    epc_hex: str
    antenna: int | None = 1
    rssi: int | None = -60
    first_seen_us: int | None = None
    last_seen_us: int | None = None
    seen_count: int | None = 1

    def tag_report_data(self) -> bytes:
        """This tag's TagReportData: the EPC and the fields that are not None (the
        absent ones are left out by the selector, so the values put for them are unused)."""
        selector = ContentSelector(
            antenna_id=self.antenna is not None,
            peak_rssi=self.rssi is not None,
            first_seen=self.first_seen_us is not None,
            last_seen=self.last_seen_us is not None,
            tag_seen_count=self.seen_count is not None,
        )
        entry = TagReportEntry(
            self.epc_hex,
            1 if self.antenna is None else self.antenna,
            self.rssi or 0,
            self.first_seen_us or 0,
            self.last_seen_us or 0,
            self.seen_count or 0,
        )
        return ReportEncoder(selector).tag_report_data(entry)


def ro_access_report(tags: Iterable[FakeTag], msg_id: int = 0) -> bytes:
    """An RO_ACCESS_REPORT with one TagReportData per tag."""
    body = b"".join(tag.tag_report_data() for tag in tags)
    return message(MsgType.RO_ACCESS_REPORT, msg_id, body)


def request_params(frame: Frame) -> dict[str, Any]:
    """A client request's parameters, decoded with sllurp's parameter decoders (for tests).

    Raises:
        KeyError: the request type is not one this helper knows the fixed fields of.
    """
    skip = _FIXED_FIELDS[frame.msg_type]
    params, _ = decode_all_parameters(frame.raw[HEADER_LEN + skip :], None, None, _REPEATED)
    return dict(params)


def gpo_writes(frame: Frame) -> list[tuple[int, bool]]:
    """The ``(port, high)`` pairs of the GPOWriteData in a SET_READER_CONFIG, in order.

    Raises:
        ValueError: ``frame`` is another message.
        RequestError: the simulator's parser refuses it.
    """
    request = parse_request(frame)
    if not isinstance(request, SetReaderConfig):
        raise ValueError(f"message type {frame.msg_type} is not a SET_READER_CONFIG")
    return list(request.gpo_writes)


@dataclass(frozen=True, slots=True)
class Received:
    """A message the fake got from the client, and on which connection (1, 2, ...)."""

    connection: int
    frame: Frame


@dataclass(eq=False)
class _Connection:
    number: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    silent: bool = False
    keepalives: asyncio.Task[None] | None = None
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def stop_keepalives(self) -> None:
        if self.keepalives is not None:
            self.keepalives.cancel()
            self.keepalives = None

    def abort(self) -> None:
        self.stop_keepalives()
        self.writer.transport.abort()


class FakeLlrpReader:
    """The reader side of LLRP for one client at a time, on 127.0.0.1.

    Use as ``async with FakeLlrpReader() as fake:`` and connect to ``fake.port``.
    A newer connection replaces an older one (the older is closed).

    Args:
        max_antennas: MaxNumberOfAntennaSupported in the capabilities.
        port: port to listen on; 0 picks a free one (kept across ``stop``/``start``).
    """

    def __init__(self, *, max_antennas: int = 4, port: int = 0) -> None:
        self.max_antennas = max_antennas
        self.port = port
        self.connection_status = ConnectionAttempt.SUCCESS
        """ConnectionAttemptEvent status for new connections; others are closed."""
        self.statuses: dict[int, Status] = {}
        """Request type -> the status to answer with instead of Success."""
        self.received: list[Received] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._conn: _Connection | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        """Connection handlers; ``stop`` ends them by closing their connection."""
        self._keepalive_tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port as before if there was one."""
        self._server, self.port = await listen(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening and drop the current connection (clients see a reset)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._conn is not None:
            self._conn.abort()
        # Handlers end on the EOF the abort gives them; cancelling one would make
        # asyncio's stream callback log the CancelledError as an error.
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=STOP_TIMEOUT_S)
        for task in set(self._keepalive_tasks):
            task.cancel()
        if self._keepalive_tasks:
            await asyncio.wait(set(self._keepalive_tasks))

    # --- waiting --------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked on every change (TimeoutError)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def requests(self, msg_type: int, connection: int | None = None) -> list[Frame]:
        """Messages of ``msg_type`` received (on one connection, if given)."""
        return [
            r.frame
            for r in self.received
            if r.frame.msg_type == msg_type and connection in (None, r.connection)
        ]

    async def wait_requests(
        self, msg_type: int, count: int = 1, *, connection: int | None = None, timeout: float = 5.0
    ) -> list[Frame]:
        await self.wait_until(lambda: len(self.requests(msg_type, connection)) >= count, timeout)
        return self.requests(msg_type, connection)

    async def wait_connections(self, count: int, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self.connections >= count, timeout)

    async def wait_disconnected(self, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self._conn is None, timeout)

    # --- pushing --------------------------------------------------------------------

    def _current(self) -> _Connection:
        if self._conn is None:
            raise RuntimeError("fake LLRP reader has no client connected")
        return self._conn

    async def send(self, data: bytes) -> None:
        """Send raw bytes to the current client."""
        await self._current().write(data)

    async def send_report(self, tags: Iterable[FakeTag]) -> None:
        conn = self._current()
        await conn.write(ro_access_report(tags, next(conn.ids)))

    async def send_keepalive(self) -> int:
        """Send a KEEPALIVE; returns its message id (the client's ACK echoes it)."""
        conn = self._current()
        msg_id = next(conn.ids)
        await conn.write(encode_keepalive(msg_id))
        return msg_id

    async def send_event(self, *events: bytes) -> None:
        """A READER_EVENT_NOTIFICATION carrying the given event parameters
        (``llrp_encode.antenna_event``, ``gpi_event``, ...), stamped now."""
        conn = self._current()
        await conn.write(encode_reader_event(next(conn.ids), _utc_now_us(), *events))

    async def drop(self, partial: bytes = b"") -> None:
        """Send ``partial`` (e.g. half a message), then reset the connection."""
        conn = self._current()
        if partial:
            await conn.write(partial)
        conn.abort()
        await self.wait_disconnected()

    def silence(self) -> None:
        """From now on the current connection gets nothing at all; TCP stays open."""
        conn = self._current()
        conn.silent = True
        conn.stop_keepalives()

    # --- serving --------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        conn = _Connection(self.connections, reader, writer)
        old, self._conn = self._conn, conn
        if old is not None:
            old.abort()
        self._notify()
        try:
            await conn.write(encode_connection_attempt(0, _utc_now_us(), self.connection_status))
            if self.connection_status is not ConnectionAttempt.SUCCESS:
                # Closed gracefully, so the client reads the refusal before the EOF.
                writer.close()
                await writer.wait_closed()
                return
            framer = LlrpFramer()
            while data := await reader.read(READ_CHUNK):
                for frame in framer.feed(data):
                    self.received.append(Received(conn.number, frame))
                    self._notify()
                    if not conn.silent:
                        await self._answer(conn, frame)
        except (ConnectionError, LlrpFramingError):
            pass
        finally:
            conn.abort()
            if self._conn is conn:
                self._conn = None
            self._handlers.discard(task)
            self._notify()

    async def _answer(self, conn: _Connection, frame: Frame) -> None:
        msg_type = frame.msg_type
        if msg_type in _NO_RESPONSE:
            return
        if msg_type not in RESPONSE_TYPES:
            text = f"message type {msg_type} not supported"
            status = Status(StatusCode.UNSUPPORTED_MESSAGE, text)
            await conn.write(encode_error_message(frame.msg_id, status))
            return
        status = self.statuses.get(msg_type, Status())
        if msg_type == MsgType.GET_READER_CAPABILITIES and status.ok:
            response = encode_capabilities_response(
                frame.msg_id, FAKE_PROFILE, self.max_antennas, CapabilitySet.GENERAL
            )
        else:
            response = encode_response(msg_type, frame.msg_id, status)
        if msg_type == MsgType.SET_READER_CONFIG and status.ok:
            spec = request_params(frame).get("KeepaliveSpec")
            if spec and spec["TimeInterval"] > 0:
                conn.stop_keepalives()
                conn.keepalives = asyncio.create_task(
                    self._keepalives(conn, spec["TimeInterval"] / 1000), name="fake-keepalives"
                )
                self._keepalive_tasks.add(conn.keepalives)
                conn.keepalives.add_done_callback(self._keepalive_tasks.discard)
        await conn.write(response)

    async def _keepalives(self, conn: _Connection, interval: float) -> None:
        with contextlib.suppress(ConnectionError):
            while not conn.silent:
                await asyncio.sleep(interval)
                await conn.write(encode_keepalive(next(conn.ids)))


def _utc_now_us() -> int:
    return time.time_ns() // 1000
