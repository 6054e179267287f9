"""A scripted fake LLRP reader for tests: the reader side of the protocol on 127.0.0.1.

It is the I/O port of ``LlrpReader`` and nothing more (the full reader simulator is in
``firmware_sim``): it greets each client with a ConnectionAttemptEvent, answers each
request with its response and an LLRPStatus (Success unless told otherwise), never
answers ENABLE_EVENTS_AND_REPORTS, sends KEEPALIVE at the interval SET_READER_CONFIG
asks for, and on command pushes tag reports, reader events, KEEPALIVEs or raw bytes,
drops the connection (mid-message if asked) or goes silent with TCP left open.

sllurp cannot encode reader-to-client messages, so the few needed are built here from
the LLRP 1.0.1 layouts (10-byte message header; TLV and TV parameters).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sllurp.llrp_proto import decode_all_parameters

from edge.readers.llrp_codec import HEADER_LEN, Frame, LlrpFramer, LlrpFramingError

VERSION = 1

# Message types (LLRP 1.0.1 section 16).
GET_READER_CAPABILITIES = 1
GET_READER_CONFIG = 2
SET_READER_CONFIG = 3
ADD_ROSPEC = 20
DELETE_ROSPEC = 21
ENABLE_ROSPEC = 24
DELETE_ACCESSSPEC = 41
RO_ACCESS_REPORT = 61
KEEPALIVE = 62
READER_EVENT_NOTIFICATION = 63
ENABLE_EVENTS_AND_REPORTS = 64
KEEPALIVE_ACK = 72
ERROR_MESSAGE = 100
GET_READER_CAPABILITIES_RESPONSE = 11

RESPONSE_TYPES = {
    1: 11, 2: 12, 3: 13, 14: 4, 20: 30, 21: 31, 22: 32, 23: 33, 24: 34, 25: 35,
    40: 50, 41: 51, 42: 52, 43: 53,
}  # fmt: skip
"""Request type -> response type. ENABLE_EVENTS_AND_REPORTS and KEEPALIVE_ACK have none."""

SUCCESS = 0
FIELD_ERROR = 101
UNSUPPORTED_MESSAGE = 109

CONNECTION_SUCCESS = 0
CONNECTION_FAILED_CLIENT_EXISTS = 2

_FIXED_FIELDS = {
    GET_READER_CAPABILITIES: 1,
    GET_READER_CONFIG: 7,
    SET_READER_CONFIG: 1,
    ADD_ROSPEC: 0,
    DELETE_ROSPEC: 4,
    ENABLE_ROSPEC: 4,
    DELETE_ACCESSSPEC: 4,
}
"""Bytes of fixed fields before the parameters, per request type we decode."""

_REPEATED = ["AISpec", "EventNotificationState", "AntennaConfiguration", "AntennaProperties"]


# --- encoding ---------------------------------------------------------------------------


def message(msg_type: int, body: bytes = b"", msg_id: int = 0) -> bytes:
    """One LLRP message: header plus body."""
    return struct.pack("!HII", (VERSION << 10) | msg_type, HEADER_LEN + len(body), msg_id) + body


def tlv(param_type: int, *parts: bytes) -> bytes:
    """A TLV parameter: type, length (header included), value."""
    value = b"".join(parts)
    return struct.pack("!HH", param_type, 4 + len(value)) + value


def tv(param_type: int, value: bytes) -> bytes:
    """A TV parameter: one byte with the top bit set and the type, then the value."""
    return bytes([0x80 | param_type]) + value


def llrp_status(code: int = SUCCESS, description: str = "") -> bytes:
    text = description.encode()
    return tlv(287, struct.pack("!HH", code, len(text)), text)


def connection_attempt(status: int = CONNECTION_SUCCESS) -> bytes:
    return tlv(256, struct.pack("!H", status))


def antenna_event(antenna: int, connected: bool) -> bytes:
    return tlv(255, struct.pack("!BH", int(connected), antenna))


def reader_exception(text: str) -> bytes:
    raw = text.encode()
    return tlv(252, struct.pack("!H", len(raw)), raw)


def connection_close() -> bytes:
    return tlv(257)


def gpi_event(port: int, high: bool) -> bytes:
    """GPIEvent: a GPI input changed level (e.g. a photo-eye blocked: high)."""
    return tlv(248, struct.pack("!HB", port, 0x80 if high else 0))


def gpo_writes(frame: Frame) -> list[tuple[int, bool]]:
    """The ``(port, high)`` pairs of the GPOWriteData in a SET_READER_CONFIG (for tests).

    Parsed here because sllurp keeps only the last of several parameters of one kind.
    """
    body = frame.raw[HEADER_LEN + _FIXED_FIELDS[SET_READER_CONFIG] :]
    writes = []
    offset = 0
    while offset + 4 <= len(body):
        param_type, length = struct.unpack_from("!HH", body, offset)
        if length < 4:
            break
        if param_type & 0x3FF == 219 and length >= 7:
            port, flags = struct.unpack_from("!HB", body, offset + 4)
            writes.append((port, bool(flags & 0x80)))
        offset += length
    return writes


def reader_event(*events: bytes, msg_id: int = 0, timestamp_us: int | None = None) -> bytes:
    """READER_EVENT_NOTIFICATION with a UTCTimestamp and the given event parameters."""
    stamp = time.time_ns() // 1000 if timestamp_us is None else timestamp_us
    data = tlv(246, tlv(128, struct.pack("!Q", stamp)), *events)
    return message(READER_EVENT_NOTIFICATION, data, msg_id)


@dataclass(frozen=True, slots=True)
class FakeTag:
    """One TagReportData entry; None leaves the field out, as some readers do."""

    epc_hex: str
    antenna: int | None = 1
    rssi: int | None = -60
    first_seen_us: int | None = None
    last_seen_us: int | None = None
    seen_count: int | None = 1


def tag_report_data(tag: FakeTag) -> bytes:
    epc = bytes.fromhex(tag.epc_hex)
    # EPC-96 (TV 13) for 96-bit EPCs, EPCData (241) with a bit count otherwise.
    parts = [tv(13, epc) if len(epc) == 12 else tlv(241, struct.pack("!H", len(epc) * 8), epc)]
    if tag.antenna is not None:
        parts.append(tv(1, struct.pack("!H", tag.antenna)))
    if tag.rssi is not None:
        parts.append(tv(6, struct.pack("!b", tag.rssi)))
    if tag.first_seen_us is not None:
        parts.append(tv(2, struct.pack("!Q", tag.first_seen_us)))
    if tag.last_seen_us is not None:
        parts.append(tv(4, struct.pack("!Q", tag.last_seen_us)))
    if tag.seen_count is not None:
        parts.append(tv(8, struct.pack("!H", tag.seen_count)))
    return tlv(240, *parts)


def ro_access_report(tags: Iterable[FakeTag], msg_id: int = 0) -> bytes:
    return message(RO_ACCESS_REPORT, b"".join(tag_report_data(t) for t in tags), msg_id)


def general_device_capabilities(max_antennas: int, firmware: str = "1.0.0-fake") -> bytes:
    fw = firmware.encode()
    has_utc_clock = 1 << 14
    fixed = struct.pack("!HHIIH", max_antennas, has_utc_clock, 25882, 2001002, len(fw))
    return tlv(137, fixed, fw, tlv(141, struct.pack("!HH", 4, 4)))


def request_params(frame: Frame) -> dict[str, Any]:
    """A client request's parameters, decoded with sllurp's parameter decoders (for tests).

    Raises:
        KeyError: the request type is not one this helper knows the fixed fields of.
    """
    skip = _FIXED_FIELDS[frame.msg_type]
    params, _ = decode_all_parameters(frame.raw[HEADER_LEN + skip :], None, None, _REPEATED)
    return dict(params)


# --- the server -----------------------------------------------------------------------


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
        self.connection_status = CONNECTION_SUCCESS
        """ConnectionAttemptEvent status for new connections; non-zero ones are closed."""
        self.statuses: dict[int, tuple[int, str]] = {}
        """Request type -> (status code, description) to answer with instead of Success."""
        self.received: list[Received] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._conn: _Connection | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        """Connection handlers; ``stop`` ends them by closing their connection."""
        self._keepalive_tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    async def __aenter__(self) -> FakeLlrpReader:
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
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

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
            await asyncio.wait(set(self._handlers), timeout=5.0)
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
        await conn.write(message(KEEPALIVE, b"", msg_id))
        return msg_id

    async def send_event(self, *events: bytes) -> None:
        """A READER_EVENT_NOTIFICATION carrying the given event parameters."""
        conn = self._current()
        await conn.write(reader_event(*events, msg_id=next(conn.ids)))

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
            await conn.write(reader_event(connection_attempt(self.connection_status)))
            if self.connection_status != CONNECTION_SUCCESS:
                # Closed gracefully, so the client reads the refusal before the EOF.
                writer.close()
                await writer.wait_closed()
                return
            framer = LlrpFramer()
            while data := await reader.read(65536):
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
        if msg_type in (ENABLE_EVENTS_AND_REPORTS, KEEPALIVE_ACK):
            return
        response = RESPONSE_TYPES.get(msg_type)
        if response is None:
            status = llrp_status(UNSUPPORTED_MESSAGE, f"message type {msg_type} not supported")
            await conn.write(message(ERROR_MESSAGE, status, frame.msg_id))
            return
        code, text = self.statuses.get(msg_type, (SUCCESS, ""))
        body = llrp_status(code, text)
        if msg_type == GET_READER_CAPABILITIES and code == SUCCESS:
            body += general_device_capabilities(self.max_antennas)
        if msg_type == SET_READER_CONFIG and code == SUCCESS:
            spec = request_params(frame).get("KeepaliveSpec")
            if spec and spec["TimeInterval"] > 0:
                conn.stop_keepalives()
                conn.keepalives = asyncio.create_task(
                    self._keepalives(conn, spec["TimeInterval"] / 1000), name="fake-keepalives"
                )
                self._keepalive_tasks.add(conn.keepalives)
                conn.keepalives.add_done_callback(self._keepalive_tasks.discard)
        await conn.write(message(response, body, frame.msg_id))

    async def _keepalives(self, conn: _Connection, interval: float) -> None:
        with contextlib.suppress(ConnectionError):
            while not conn.silent:
                await asyncio.sleep(interval)
                await conn.write(message(KEEPALIVE, b"", next(conn.ids)))
