"""A simulated LLRP 1.0.1 RFID reader on TCP: an Impinj R420 look-alike.

``ReaderSimulator`` listens on a TCP port; each client connection gets a session that
speaks first (ConnectionAttemptEvent), answers every request with exactly one response
carrying an LLRPStatus, keeps ROSpecs and AccessSpecs, runs inventory while a ROSpec
is active and sends RO_ACCESS_REPORTs of what its ``TagField`` lets the antennas read.
Several simulators can run in one event loop (one per simulated reader).

Behaviour worth knowing:

* One client at a time, as on real readers: a second connection gets a
  ConnectionAttemptEvent "Failed (a Client initiated connection already exists)" and is
  closed.
* ROSpecs and AccessSpecs live with the connection (a new connection starts empty), so a
  client that adds without deleting first still gets Success after a reconnect.
* Inventory runs in rounds (``round_s``); each round asks the field which tags each
  driven antenna read. Rounds run at their scheduled times even when the event loop
  wakes late (bounded catch-up), so the physical model does not depend on scheduling.
* Reports: the reads of a window are aggregated per tag and antenna. A window closes at
  the end of each AISpec cycle: the AISpec's Duration (or TagObservationTrigger
  timeout), else ``report_cycle_s``; ``Upon_N_(Milli)Seconds`` triggers use their own
  period; ``Upon_N_Tags_*`` with N > 0 also closes it at N entries. A strictly
  conformant reader would never report under sllurp's defaults (Null AISpec stop, N=0);
  the simulator treats every AISpec as cycling, which is what clients expect.
* ENABLE_EVENTS_AND_REPORTS and GET_REPORT have no response (GET_REPORT flushes now).
* Timestamps are UTC microseconds derived from one monotonic clock reading per session,
  so they are real wall-clock time and never go backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

from edge.readers.llrp_codec import Frame, LlrpFramer, LlrpFramingError
from firmware_sim.errors import EncodeError, SimConfigError
from firmware_sim.llrp_encode import (
    IMPINJ_ENABLE_EXTENSIONS,
    IMPINJ_ENABLE_EXTENSIONS_RESPONSE,
    IMPINJ_VENDOR_ID,
    RESPONSE_TYPES,
    SUCCESS,
    AntennaState,
    ConnectionAttempt,
    MsgType,
    ReportEncoder,
    ReportSpec,
    ReportTrigger,
    Status,
    StatusCode,
    encode_antenna_event,
    encode_capabilities_response,
    encode_connection_attempt,
    encode_custom_response,
    encode_error_message,
    encode_get_rospecs_response,
    encode_keepalive,
    encode_reader_config_response,
    encode_response,
    llrp_status,
    message,
)
from firmware_sim.llrp_requests import (
    ALL_ANTENNAS,
    ALL_SPECS,
    MAX_REQUEST_FRAME,
    AddAccessSpec,
    AddRoSpec,
    AiSpecStop,
    CapabilitiesRequest,
    CustomRequest,
    ReaderConfigRequest,
    Request,
    RequestError,
    RoSpec,
    RoSpecState,
    SetReaderConfig,
    SpecIdRequest,
    StartTrigger,
    parse_request,
)
from firmware_sim.portal import TagField
from firmware_sim.profile import R420, ReaderProfile
from firmware_sim.reports import ReadWindow

logger = logging.getLogger(__name__)

DEFAULT_PORT: Final = 5084
MAX_ANTENNAS: Final = 8
ROUND_S: Final = 0.025
"""Default inventory round: each antenna gets one chance at each tag per round."""
REPORT_CYCLE_S: Final = 0.075
"""Default report window when the ROSpec does not bound its AISpec."""
MIN_REPORT_CYCLE_S: Final = 0.01
MAX_REPORT_CYCLE_S: Final = 60.0
MIN_KEEPALIVE_S: Final = 0.05
"""Shorter KEEPALIVE periods are raised to this (a flood helps nobody)."""
MAX_CATCH_UP_ROUNDS: Final = 8
"""Rounds run late after a slow wake-up; beyond that, rounds are skipped."""
READ_CHUNK: Final = 64 * 1024
CLOSE_TIMEOUT_S: Final = 5.0
DEFAULT_EVENTS: Final[Mapping[str, bool]] = {"AntennaEvent": True}


@dataclass(frozen=True, slots=True)
class SimStats:
    """Counters of one simulator since it started (all sessions)."""

    connections: int
    refused: int
    requests: int
    reports_sent: int
    tag_entries_sent: int
    reads_emitted: int
    keepalives_sent: int
    keepalive_acks: int


@dataclass(slots=True)
class _Spec:
    spec: RoSpec
    state: RoSpecState

    def param(self) -> bytes:
        # CurrentState is the byte after ROSpecID (u32) and Priority (u8) in the TLV body.
        raw = self.spec.raw
        return raw[:9] + bytes([self.state]) + raw[10:]


@dataclass(frozen=True, slots=True)
class _ReportPlan:
    spec: ReportSpec
    cycle_s: float
    n_tags: int


def _report_plan(spec: RoSpec, default: ReportSpec, cycle_s: float) -> _ReportPlan:
    report = spec.report or default
    trigger = report.trigger
    n_tags = 0
    if trigger in (ReportTrigger.N_SECONDS, ReportTrigger.N_SECONDS_OR_END_OF_ROSPEC):
        cycle = float(report.n) if report.n else cycle_s
    elif trigger in (ReportTrigger.N_MILLISECONDS, ReportTrigger.N_MILLISECONDS_OR_END_OF_ROSPEC):
        cycle = report.n / 1000 if report.n else cycle_s
    else:
        bounded = spec.aispec_stop in (AiSpecStop.DURATION, AiSpecStop.TAG_OBSERVATION)
        cycle = spec.aispec_duration_ms / 1000 if bounded and spec.aispec_duration_ms else cycle_s
        if trigger is not ReportTrigger.NONE:
            n_tags = report.n
        if spec.aispec_stop is AiSpecStop.TAG_OBSERVATION and spec.aispec_tag_count:
            n_tags = min(n_tags or spec.aispec_tag_count, spec.aispec_tag_count)
    cycle = min(MAX_REPORT_CYCLE_S, max(MIN_REPORT_CYCLE_S, cycle))
    return _ReportPlan(report, cycle, n_tags)


def _mac(name: str) -> bytes:
    digest = bytearray(hashlib.sha256(name.encode("utf-8")).digest()[:6])
    digest[0] = (digest[0] & 0xFE) | 0x02  # unicast, locally administered
    return bytes(digest)


class ReaderSimulator:
    """A simulated LLRP reader serving on TCP; an async context manager.

    Args:
        antennas: antenna ports the reader has (1..8); reported as
            MaxNumberOfAntennaSupported.
        name: the reader's name (logs, its MAC address, random seeds).
        seed: seed for the reads' randomness; None for a fresh random seed.
        host: address to listen on.
        port: TCP port; 0 picks a free one (see ``port`` once entered).
        field: what the antennas can see; a new empty ``TagField`` by default.
        profile: identity and capability tables (an Impinj R420 by default).
        round_s: inventory round length in seconds.
        report_cycle_s: report window when the ROSpec does not bound its AISpec.

    Raises:
        SimConfigError: a value is out of range.
    """

    def __init__(
        self,
        *,
        antennas: int = 4,
        name: str = "sim",
        seed: int | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        field: TagField | None = None,
        profile: ReaderProfile = R420,
        round_s: float = ROUND_S,
        report_cycle_s: float = REPORT_CYCLE_S,
    ) -> None:
        if not 1 <= antennas <= MAX_ANTENNAS:
            raise SimConfigError(f"antennas {antennas} outside 1..{MAX_ANTENNAS}")
        if not 0 <= port <= 65535:
            raise SimConfigError(f"port {port} outside 0..65535")
        if not 0.005 <= round_s <= 1.0:
            raise SimConfigError(f"round_s {round_s} outside 0.005..1")
        if not MIN_REPORT_CYCLE_S <= report_cycle_s <= MAX_REPORT_CYCLE_S:
            raise SimConfigError(f"report_cycle_s {report_cycle_s} out of range")
        if not name or len(name) > 64:
            raise SimConfigError("name must be 1..64 characters")
        self.antennas = antennas
        self.name = name
        self.seed = seed
        self.host = host
        self.field = field if field is not None else TagField()
        self.profile = profile
        self.round_s = round_s
        self.report_cycle_s = report_cycle_s
        self.mac = _mac(name)
        self._requested_port = port
        self._port: int | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: _Session | None = None
        self._sessions_started = 0
        self._disconnected: set[int] = set()
        self._emitted: Counter[tuple[str, int]] = Counter()
        self._counts: Counter[str] = Counter()
        self._requests: Counter[int] = Counter()
        self._connected = asyncio.Event()
        self._inventorying = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._on_client, self.host, self._requested_port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        logger.info("reader %s listening on %s:%d", self.name, self.host, self._port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening and end every session (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._session is not None:
            # Hanging up ends the session the normal way (end of file). Cancelling the
            # connection task instead makes Python 3.11's streams log a spurious error.
            self._session.hang_up()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)
        if server is not None:
            await server.wait_closed()

    @property
    def port(self) -> int:
        """The TCP port the simulator listens on.

        Raises:
            SimConfigError: the simulator has not been entered yet.
        """
        if self._port is None:
            raise SimConfigError("the simulator is not serving yet (use `async with`)")
        return self._port

    # --- observation -----------------------------------------------------------------------

    def now(self) -> float:
        """The simulator's clock (monotonic seconds): the time base of its ``field``."""
        return time.monotonic()

    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def inventorying(self) -> bool:
        return self._inventorying.is_set()

    @property
    def emitted(self) -> Counter[tuple[str, int]]:
        """Tag reads sent in reports so far, by (EPC hex, antenna) (sum of seen counts)."""
        return Counter(self._emitted)

    @property
    def requests(self) -> Counter[int]:
        """Client messages received so far, by LLRP message type."""
        return Counter(self._requests)

    def stats(self) -> SimStats:
        c = self._counts
        return SimStats(
            connections=c["connections"],
            refused=c["refused"],
            requests=sum(self._requests.values()),
            reports_sent=c["reports"],
            tag_entries_sent=c["entries"],
            reads_emitted=c["reads"],
            keepalives_sent=c["keepalives"],
            keepalive_acks=c["keepalive_acks"],
        )

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a client holds a session.

        Raises:
            TimeoutError: none did within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def wait_inventory(self, timeout: float | None = None) -> None:
        """Wait until a client has inventory running.

        Raises:
            TimeoutError: inventory did not start within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._inventorying.wait()

    # --- control -----------------------------------------------------------------------------

    def set_antenna_connected(self, antenna: int, connected: bool) -> None:
        """Plug or unplug an antenna; a session with AntennaEvent on is told at once.

        Raises:
            SimConfigError: no such antenna port.
        """
        if not 1 <= antenna <= self.antennas:
            raise SimConfigError(f"antenna {antenna} outside 1..{self.antennas}")
        was = antenna not in self._disconnected
        if connected:
            self._disconnected.discard(antenna)
        else:
            self._disconnected.add(antenna)
        if was != connected and self._session is not None:
            self._session.antenna_changed(antenna, connected)

    def antenna_connected(self, antenna: int) -> bool:
        return 1 <= antenna <= self.antennas and antenna not in self._disconnected

    # --- called by sessions ----------------------------------------------------------------

    def _record(self, entries: list[tuple[str, int, int]]) -> None:
        emitted = self._emitted
        reads = 0
        for epc, antenna, count in entries:
            emitted[(epc, antenna)] += count
            reads += count
        self._counts["reports"] += 1
        self._counts["entries"] += len(entries)
        self._counts["reads"] += reads

    def _count(self, what: str) -> None:
        self._counts[what] += 1

    def _count_request(self, msg_type: int) -> None:
        self._requests[msg_type] += 1

    def _set_inventorying(self, running: bool) -> None:
        if running:
            self._inventorying.set()
        else:
            self._inventorying.clear()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._session is not None or self._server is None:
                await self._refuse(writer)
                return
            self._sessions_started += 1
            self._count("connections")
            session = _Session(self, reader, writer, self._sessions_started)
            self._session = session
            self._connected.set()
            try:
                await session.run()
            finally:
                self._session = None
                self._connected.clear()
                self._set_inventorying(False)
        finally:
            self._tasks.discard(task)

    async def _refuse(self, writer: asyncio.StreamWriter) -> None:
        self._count("refused")
        status = ConnectionAttempt.CLIENT_INITIATED_EXISTS
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(encode_connection_attempt(0, time.time_ns() // 1000, status))
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await writer.wait_closed()


_Handler = Callable[["_Session", Request], Awaitable[bool]]


class _Session:
    """One client connection: protocol state, inventory and keepalive tasks."""

    def __init__(
        self,
        sim: ReaderSimulator,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
    ) -> None:
        self.sim = sim
        self._reader = reader
        self._writer = writer
        seed = sim.seed
        self._rng = (
            random.Random(f"{seed}:{sim.name}:{number}") if seed is not None else random.Random()
        )
        self._framer = LlrpFramer(MAX_REQUEST_FRAME)
        self._rospecs: dict[int, _Spec] = {}
        self._access_specs: dict[int, bytes] = {}
        self._keepalive_ms = 0
        self._default_report = ReportSpec()
        self._events = dict(DEFAULT_EVENTS)
        self._window = ReadWindow()
        self._encoder: ReportEncoder | None = None
        self._msg_id = 0
        # One clock reading ties monotonic time (the field's) to UTC (the reports').
        self._mono0 = time.monotonic()
        self._utc0_us = time.time_ns() // 1000
        self._tg: asyncio.TaskGroup | None = None
        self._inventory: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None

    # --- plumbing ----------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._msg_id = (self._msg_id + 1) & 0xFFFFFFFF
        return self._msg_id

    def hang_up(self) -> None:
        """Drop the connection (unsent data too); the session ends as if the client left."""
        self._writer.transport.abort()

    def utc_us(self, t: float) -> int:
        """UTC microseconds of monotonic time ``t``."""
        return self._utc0_us + round((t - self._mono0) * 1_000_000)

    def _write(self, data: bytes) -> bool:
        if self._writer.is_closing():
            return False
        self._writer.write(data)
        return True

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            # The peer is gone; closing makes the receive loop see end-of-file.
            self._writer.close()

    async def run(self) -> None:
        """Serve the connection until the client closes it or asks to."""
        peer = self._writer.get_extra_info("peername")
        logger.info("reader %s: client %s connected", self.sim.name, peer)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                now = time.monotonic()
                self._write(encode_connection_attempt(self._next_id(), self.utc_us(now)))
                await self._drain()
                try:
                    await self._receive_loop()
                finally:
                    await self._stop_inventory(flush=False)
                    self._set_keepalive(0)
        except* OSError as group:
            logger.info("reader %s: connection lost: %s", self.sim.name, group.exceptions[0])
        except* Exception as group:
            # A simulator bug must not pass silently; the client sees the connection drop.
            logger.error("reader %s: session failed", self.sim.name, exc_info=group.exceptions[0])
        finally:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._writer.wait_closed()
            logger.info("reader %s: client %s gone", self.sim.name, peer)

    async def _receive_loop(self) -> None:
        while True:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                return
            try:
                for frame in self._framer.feed(data):
                    if not await self._handle(frame):
                        return
            except LlrpFramingError as err:
                # The stream cannot be resynchronised: say why, then hang up.
                logger.warning("reader %s: %s", self.sim.name, err)
                bad_version = "version" in str(err)
                code = StatusCode.UNSUPPORTED_VERSION if bad_version else StatusCode.FIELD_ERROR
                status = Status(code, str(err))
                self._write(encode_error_message(0, status))
                await self._drain()
                return

    async def _handle(self, frame: Frame) -> bool:
        self.sim._count_request(frame.msg_type)
        try:
            request = parse_request(frame)
        except RequestError as err:
            self._answer_error(frame.msg_type, frame.msg_id, err.status)
            await self._drain()
            return True
        handler = _HANDLERS.get(frame.msg_type)
        if handler is None:
            text = f"message type {frame.msg_type} is not supported"
            self._write(
                encode_error_message(frame.msg_id, Status(StatusCode.UNSUPPORTED_MESSAGE, text))
            )
            keep_open = True
        else:
            try:
                keep_open = await handler(self, request)
            except RequestError as err:
                self._answer_error(frame.msg_type, frame.msg_id, err.status)
                keep_open = True
        await self._drain()
        return keep_open

    def _answer_error(self, msg_type: int, msg_id: int, status: Status) -> None:
        if msg_type in RESPONSE_TYPES:
            self._write(encode_response(msg_type, msg_id, status))
        else:
            self._write(encode_error_message(msg_id, status))

    def _ok(self, request: Request, extra: bytes = b"") -> bool:
        self._write(encode_response(request.msg_type, request.msg_id, SUCCESS, extra))
        return True

    # --- events ------------------------------------------------------------------------------

    def antenna_changed(self, antenna: int, connected: bool) -> None:
        if self._events.get("AntennaEvent", False):
            utc = self.utc_us(time.monotonic())
            self._write(encode_antenna_event(self._next_id(), utc, antenna, connected))

    # --- keepalive ---------------------------------------------------------------------------

    def _set_keepalive(self, interval_ms: int) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        self._keepalive_ms = interval_ms
        if interval_ms > 0 and self._tg is not None:
            interval = max(MIN_KEEPALIVE_S, interval_ms / 1000)
            self._keepalive = self._tg.create_task(
                self._keepalive_loop(interval), name=f"{self.sim.name}-keepalive"
            )

    async def _keepalive_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if not self._write(encode_keepalive(self._next_id())):
                return
            self.sim._count("keepalives")
            await self._drain()

    # --- inventory ---------------------------------------------------------------------------

    def _antennas_for(self, spec: RoSpec) -> list[int]:
        wanted = range(1, self.sim.antennas + 1) if ALL_ANTENNAS in spec.antennas else spec.antennas
        return [a for a in wanted if self.sim.antenna_connected(a)]

    async def _start_inventory(self, spec: _Spec) -> None:
        await self._stop_inventory(flush=True)
        spec.state = RoSpecState.ACTIVE
        plan = _report_plan(spec.spec, self._default_report, self.sim.report_cycle_s)
        self._encoder = ReportEncoder(
            plan.spec.selector,
            rospec_id=spec.spec.rospec_id,
            inventory_parameter_spec_id=spec.spec.inventory_parameter_spec_id,
        )
        assert self._tg is not None
        self._inventory = self._tg.create_task(
            self._inventory_loop(spec, plan, self._encoder), name=f"{self.sim.name}-inventory"
        )
        self.sim._set_inventorying(True)

    async def _stop_inventory(self, *, flush: bool) -> None:
        task, self._inventory = self._inventory, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        if flush and self._encoder is not None:
            self._flush(self._encoder)
        self._encoder = None
        self._window = ReadWindow()
        for spec in self._rospecs.values():
            if spec.state is RoSpecState.ACTIVE:
                spec.state = RoSpecState.INACTIVE
        self.sim._set_inventorying(False)

    def _flush(self, encoder: ReportEncoder) -> None:
        entries = self._window.drain()
        if not entries or self._writer.is_closing():
            return
        try:
            data = encoder.encode(self._next_id(), entries)
        except EncodeError:
            logger.exception("reader %s: cannot encode a report; reads dropped", self.sim.name)
            return
        self._write(data)
        self.sim._record([(e.epc_hex, e.antenna, e.seen_count) for e in entries])

    def _round(
        self,
        t: float,
        dt: float,
        antennas: list[int],
        channel: int,
        n_tags: int,
        encoder: ReportEncoder,
    ) -> None:
        observations = self.sim.field.observe(t, dt, antennas, self._rng)
        if not observations:
            return
        utc = self.utc_us(t)
        window = self._window
        for epc, antenna, rssi in observations:
            window.add(epc, antenna, rssi, utc, channel)
            if n_tags and len(window) >= n_tags:
                self._flush(encoder)

    async def _inventory_loop(self, spec: _Spec, plan: _ReportPlan, encoder: ReportEncoder) -> None:
        round_s = self.sim.round_s
        hops = max(1, len(self.sim.profile.hop_table_khz))
        start = time.monotonic()
        deadline = (
            start + spec.spec.stop_duration_ms / 1000
            if spec.spec.stop_duration_ms is not None
            else None
        )
        next_round = start
        previous = start - round_s
        next_flush = start + plan.cycle_s
        round_no = 0
        while True:
            now = time.monotonic()
            antennas = self._antennas_for(spec.spec)
            ran = 0
            # Rounds run at their scheduled times, so a late wake-up does not thin reads.
            while next_round <= now and ran < MAX_CATCH_UP_ROUNDS:
                channel = round_no % hops + 1
                dt = next_round - previous
                self._round(next_round, dt, antennas, channel, plan.n_tags, encoder)
                previous = next_round
                next_round += round_s
                round_no += 1
                ran += 1
            if next_round <= now:
                next_round = now + round_s
            if now >= next_flush:
                self._flush(encoder)
                next_flush = max(next_flush + plan.cycle_s, now)
            await self._drain()
            if self._writer.is_closing():
                return
            if deadline is not None and now >= deadline:
                # Duration stop trigger: the ROSpec ends and goes back to Inactive.
                self._flush(encoder)
                spec.state = RoSpecState.INACTIVE
                self._inventory = None
                self._encoder = None
                self.sim._set_inventorying(False)
                return
            wake = min(next_round, next_flush)
            if deadline is not None:
                wake = min(wake, deadline)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    # --- ROSpec bookkeeping ------------------------------------------------------------------

    def _spec(self, spec_id: int) -> _Spec:
        try:
            return self._rospecs[spec_id]
        except KeyError:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"ROSpecID {spec_id}: no such ROSpec", field_num=0)
            ) from None

    def _specs(self, spec_id: int) -> list[_Spec]:
        return list(self._rospecs.values()) if spec_id == ALL_SPECS else [self._spec(spec_id)]

    @property
    def _active(self) -> _Spec | None:
        for spec in self._rospecs.values():
            if spec.state is RoSpecState.ACTIVE:
                return spec
        return None

    # --- handlers (one per request type; each writes exactly one response) -------------------

    async def _get_capabilities(self, request: Request) -> bool:
        assert isinstance(request, CapabilitiesRequest)
        self._write(
            encode_capabilities_response(
                request.msg_id, self.sim.profile, self.sim.antennas, request.requested
            )
        )
        return True

    async def _get_config(self, request: Request) -> bool:
        assert isinstance(request, ReaderConfigRequest)
        if request.antenna == ALL_ANTENNAS:
            ports = range(1, self.sim.antennas + 1)
        elif request.antenna <= self.sim.antennas:
            ports = range(request.antenna, request.antenna + 1)
        else:
            raise RequestError(
                Status(
                    StatusCode.FIELD_ERROR,
                    f"AntennaID {request.antenna} outside 1..{self.sim.antennas}",
                    field_num=0,
                    field_error=StatusCode.A_OUT_OF_RANGE,
                )
            )
        antennas = [
            AntennaState(a, self.sim.antenna_connected(a), self.sim.profile.antenna_gain_centi_dbi)
            for a in ports
        ]
        self._write(
            encode_reader_config_response(
                request.msg_id,
                reader_mac=self.sim.mac,
                antennas=antennas,
                report_spec=self._default_report,
                keepalive_ms=self._keepalive_ms,
                requested=request.requested,
            )
        )
        return True

    async def _set_config(self, request: Request) -> bool:
        assert isinstance(request, SetReaderConfig)
        if request.reset:
            self._default_report = ReportSpec()
            self._events = dict(DEFAULT_EVENTS)
            self._set_keepalive(0)
        if request.report is not None:
            self._default_report = request.report
        self._events.update(request.events)
        if request.keepalive_ms is not None:
            self._set_keepalive(request.keepalive_ms)
        return self._ok(request)

    async def _close_connection(self, request: Request) -> bool:
        await self._stop_inventory(flush=True)
        self._ok(request)
        return False

    async def _add_rospec(self, request: Request) -> bool:
        assert isinstance(request, AddRoSpec)
        spec = request.rospec
        if spec.rospec_id == ALL_SPECS:
            raise RequestError(Status(StatusCode.FIELD_ERROR, "ROSpecID 0 is reserved", 0))
        if spec.current_state is not RoSpecState.DISABLED:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, "a new ROSpec must be Disabled", field_num=2)
            )
        if spec.rospec_id in self._rospecs:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"ROSpecID {spec.rospec_id} exists", field_num=0)
            )
        if len(self._rospecs) >= self.sim.profile.max_rospecs:
            limit = self.sim.profile.max_rospecs
            raise RequestError(
                Status(StatusCode.OVERFLOW_PARAMETER, f"the reader holds at most {limit} ROSpec")
            )
        beyond = [a for a in spec.antennas if a > self.sim.antennas]
        if beyond:
            raise RequestError(
                Status(
                    StatusCode.FIELD_ERROR,
                    f"AntennaID {beyond[0]} outside 1..{self.sim.antennas}",
                    field_num=0,
                    field_error=StatusCode.A_OUT_OF_RANGE,
                )
            )
        self._rospecs[spec.rospec_id] = _Spec(spec, RoSpecState.DISABLED)
        return self._ok(request)

    async def _delete_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        specs = self._specs(request.spec_id)
        if any(s.state is RoSpecState.ACTIVE for s in specs):
            await self._stop_inventory(flush=True)
        for spec in specs:
            del self._rospecs[spec.spec.rospec_id]
        return self._ok(request)

    async def _enable_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        to_start: _Spec | None = None
        for spec in self._specs(request.spec_id):
            if spec.state is RoSpecState.DISABLED:
                spec.state = RoSpecState.INACTIVE
                if spec.spec.start_trigger is StartTrigger.IMMEDIATE:
                    to_start = spec
        # The response goes first: a client waits for it before it expects reports.
        self._ok(request)
        if to_start is not None:
            await self._drain()
            await self._start_inventory(to_start)
        return True

    async def _start_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        spec = self._spec(request.spec_id)
        if spec.state is RoSpecState.DISABLED:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"ROSpec {request.spec_id} is Disabled", 0)
            )
        self._ok(request)
        if spec.state is RoSpecState.INACTIVE:
            await self._drain()
            await self._start_inventory(spec)
        return True

    async def _stop_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        spec = self._spec(request.spec_id)
        if spec.state is RoSpecState.ACTIVE:
            await self._stop_inventory(flush=True)
        return self._ok(request)

    async def _disable_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        specs = self._specs(request.spec_id)
        if any(s.state is RoSpecState.ACTIVE for s in specs):
            await self._stop_inventory(flush=True)
        for spec in specs:
            spec.state = RoSpecState.DISABLED
        return self._ok(request)

    async def _get_rospecs(self, request: Request) -> bool:
        params = [spec.param() for spec in self._rospecs.values()]
        self._write(encode_get_rospecs_response(request.msg_id, params))
        return True

    def _access_ids(self, spec_id: int) -> list[int]:
        if spec_id == ALL_SPECS:
            return list(self._access_specs)
        if spec_id not in self._access_specs:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"AccessSpecID {spec_id}: no such AccessSpec", 0)
            )
        return [spec_id]

    async def _add_access_spec(self, request: Request) -> bool:
        assert isinstance(request, AddAccessSpec)
        if request.access_spec_id in self._access_specs:
            raise RequestError(
                Status(StatusCode.FIELD_ERROR, f"AccessSpecID {request.access_spec_id} exists", 0)
            )
        self._access_specs[request.access_spec_id] = request.raw
        return self._ok(request)

    async def _delete_access_spec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        for spec_id in self._access_ids(request.spec_id):
            del self._access_specs[spec_id]
        return self._ok(request)

    async def _toggle_access_spec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        self._access_ids(request.spec_id)
        return self._ok(request)

    async def _get_access_specs(self, request: Request) -> bool:
        body = llrp_status(SUCCESS) + b"".join(self._access_specs.values())
        self._write(message(MsgType.GET_ACCESSSPECS_RESPONSE, request.msg_id, body))
        return True

    async def _no_response(self, request: Request) -> bool:
        # ENABLE_EVENTS_AND_REPORTS: no response exists (an answer would kill sllurp).
        return True

    async def _get_report(self, request: Request) -> bool:
        if self._encoder is not None:
            self._flush(self._encoder)
        return True

    async def _keepalive_ack(self, request: Request) -> bool:
        self.sim._count("keepalive_acks")
        return True

    async def _custom(self, request: Request) -> bool:
        assert isinstance(request, CustomRequest)
        if (request.vendor_id, request.subtype) == (IMPINJ_VENDOR_ID, IMPINJ_ENABLE_EXTENSIONS):
            self._write(
                encode_custom_response(
                    IMPINJ_VENDOR_ID, IMPINJ_ENABLE_EXTENSIONS_RESPONSE, request.msg_id, SUCCESS
                )
            )
            return True
        text = f"custom message {request.vendor_id}/{request.subtype} is not supported"
        status = Status(StatusCode.UNSUPPORTED_MESSAGE, text)
        self._write(encode_error_message(request.msg_id, status))
        return True


_HANDLERS: Mapping[int, _Handler] = {
    MsgType.GET_READER_CAPABILITIES: _Session._get_capabilities,
    MsgType.GET_READER_CONFIG: _Session._get_config,
    MsgType.SET_READER_CONFIG: _Session._set_config,
    MsgType.CLOSE_CONNECTION: _Session._close_connection,
    MsgType.ADD_ROSPEC: _Session._add_rospec,
    MsgType.DELETE_ROSPEC: _Session._delete_rospec,
    MsgType.START_ROSPEC: _Session._start_rospec,
    MsgType.STOP_ROSPEC: _Session._stop_rospec,
    MsgType.ENABLE_ROSPEC: _Session._enable_rospec,
    MsgType.DISABLE_ROSPEC: _Session._disable_rospec,
    MsgType.GET_ROSPECS: _Session._get_rospecs,
    MsgType.ADD_ACCESSSPEC: _Session._add_access_spec,
    MsgType.DELETE_ACCESSSPEC: _Session._delete_access_spec,
    MsgType.ENABLE_ACCESSSPEC: _Session._toggle_access_spec,
    MsgType.DISABLE_ACCESSSPEC: _Session._toggle_access_spec,
    MsgType.GET_ACCESSSPECS: _Session._get_access_specs,
    MsgType.ENABLE_EVENTS_AND_REPORTS: _Session._no_response,
    MsgType.GET_REPORT: _Session._get_report,
    MsgType.KEEPALIVE_ACK: _Session._keepalive_ack,
    MsgType.CUSTOM_MESSAGE: _Session._custom,
}
"""Request type → handler: the reader's behaviour as a table."""
