"""One client connection to a simulated reader: LLRP requests in, responses, reports out.

A ``Session`` speaks first (ConnectionAttemptEvent), answers each request with exactly one
response (``_HANDLERS``, the behaviour as a table), keeps ROSpecs and AccessSpecs, arms
their start triggers (Immediate, Periodic, GPI; Null waits for START_ROSPEC), runs the
active one (``inventory.RoSpecRun``), sends KEEPALIVE at the requested interval and the
reader events the client enabled (AntennaEvent, GPIEvent, ROSpecEvent, AISpecEvent).

Every byte to the client goes through ``_send``, which is also where session faults act:
a drop cuts a message in half, a hung reader sends nothing, a slow one trickles its
output through a queue. Tag reads count as emitted (``ReaderSimulator.emitted``) only
when their report has been handed to the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from edge.readers.llrp_codec import Frame, LlrpFramer, LlrpFramingError
from firmware_sim.air import FULL_POWER, Flags, air_settings, heard
from firmware_sim.errors import EncodeError
from firmware_sim.faults import HANDSHAKE_REQUEST_TYPES, Fault, FaultKind
from firmware_sim.inventory import ReportPlan, RoSpecRun, report_plan
from firmware_sim.llrp_encode import (
    encode_aispec_event,
    encode_antenna_event,
    encode_capabilities_response,
    encode_connection_attempt,
    encode_custom_response,
    encode_error_message,
    encode_get_rospecs_response,
    encode_gpi_event,
    encode_keepalive,
    encode_reader_config_response,
    encode_response,
    encode_rospec_event,
    llrp_status,
    message,
)
from firmware_sim.llrp_params import RequestError
from firmware_sim.llrp_requests import (
    ALL_SPECS,
    MAX_REQUEST_FRAME,
    AddAccessSpec,
    AddRoSpec,
    CapabilitiesRequest,
    CustomRequest,
    ReaderConfigRequest,
    Request,
    SetReaderConfig,
    SpecIdRequest,
    parse_request,
)
from firmware_sim.llrp_rospec import ALL_ANTENNAS, RoSpec, RoSpecState
from firmware_sim.llrp_triggers import AiSpec, GpiTrigger, StartTrigger
from firmware_sim.llrp_types import (
    IMPINJ_ENABLE_EXTENSIONS,
    IMPINJ_ENABLE_EXTENSIONS_RESPONSE,
    IMPINJ_VENDOR_ID,
    RESPONSE_TYPES,
    SUCCESS,
    AntennaState,
    MsgType,
    ReportSpec,
    ReportTrigger,
    RoSpecEventType,
    Status,
    StatusCode,
)
from firmware_sim.report_encoder import ReportEncoder
from firmware_sim.reports import ReadWindow

if TYPE_CHECKING:
    from firmware_sim.reader import ReaderSimulator

logger = logging.getLogger("firmware_sim.reader")

READ_CHUNK: Final = 64 * 1024
CLOSE_TIMEOUT_S: Final = 5.0
MIN_KEEPALIVE_S: Final = 0.05
"""Shorter KEEPALIVE periods are raised to this (a flood helps nobody)."""
DEFAULT_EVENTS: Final[Mapping[str, bool]] = {"AntennaEvent": True}
MAX_QUEUED_BYTES: Final = 8 * 1024 * 1024
"""A slow reader's report buffer; reports beyond it are dropped (and not counted)."""
TRICKLE_TICK_S: Final = 0.02
DROP_GRACE_S: Final = 0.05
"""Time for the half message to leave before the socket is dropped."""
REPLAY_INTERVAL_S: Final = 0.05

Output = Literal["response", "event", "keepalive", "report", "raw"]
Reads = list[tuple[str, int, int]]


@dataclass(frozen=True, slots=True)
class ConnectionFaults:
    """Faults that shape one connection from its first byte."""

    no_rf_mode_table: bool = False
    advertised_antennas: int | None = None
    error_on: int | None = None
    """Message type answered with ERROR_MESSAGE instead of its response."""
    empty_report: bool = False

    @classmethod
    def of(cls, faults: list[Fault], antennas: int) -> ConnectionFaults:
        """The connection faults in ``faults``, for a reader with ``antennas`` ports."""
        no_rf_mode_table = False
        advertised: int | None = None
        error_on: int | None = None
        empty_report = False
        for fault in faults:
            if fault.kind is FaultKind.NO_RF_MODE_TABLE:
                no_rf_mode_table = True
            elif fault.kind is FaultKind.FEWER_ANTENNAS:
                wanted = fault.params["antennas"]
                count = wanted if isinstance(wanted, int) else antennas - 1
                advertised = max(1, min(antennas, count))
            elif fault.kind is FaultKind.ERROR_IN_HANDSHAKE:
                error_on = HANDSHAKE_REQUEST_TYPES[fault.str_("request")]
            elif fault.kind is FaultKind.EMPTY_REPORT:
                empty_report = True
        return cls(no_rf_mode_table, advertised, error_on, empty_report)


@dataclass(slots=True)
class _Spec:
    spec: RoSpec
    state: RoSpecState
    armed: asyncio.Task[None] | None = field(default=None, repr=False)
    """The Periodic start trigger's timer while the ROSpec is enabled."""

    def param(self) -> bytes:
        # CurrentState is the byte after ROSpecID (u32) and Priority (u8) in the TLV body.
        raw = self.spec.raw
        return raw[:9] + bytes([self.state]) + raw[10:]

    def disarm(self) -> None:
        if self.armed is not None:
            self.armed.cancel()
            self.armed = None


class Session:
    """One client connection: protocol state, inventory, keepalive and fault tasks."""

    def __init__(
        self,
        sim: ReaderSimulator,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
        faults: ConnectionFaults,
    ) -> None:
        self.sim = sim
        self._reader = reader
        self._writer = writer
        self.faults = faults
        self.antennas = faults.advertised_antennas or sim.antennas
        """Antennas this connection was told about (a fault may advertise fewer)."""
        seed = sim.seed
        self.rng = (
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
        self._plan: ReportPlan | None = None
        self._impinj = False
        """The client enabled Impinj extensions on this connection."""
        self._air = FULL_POWER
        self._flags: Flags | None = None
        self._msg_id = 0
        # One clock reading ties monotonic time (the field's) to UTC (the reports').
        self._mono0 = time.monotonic()
        self._utc0_us = time.time_ns() // 1000
        self._tg: asyncio.TaskGroup | None = None
        self._inventory: asyncio.Task[None] | None = None
        self._running: _Spec | None = None
        self._replay: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._gpi_edges: dict[tuple[int, bool], float] = {}
        self._gpi_off: set[int] = set()
        """GPI ports a client switched off (GPIConfig false): no events, no triggers."""
        self._error_on = faults.error_on
        self._empty_report_due = faults.empty_report
        self.inventory_started = False
        # Fault state.
        self._dead = False
        self._hung = False
        self._hung_reports = False
        self._queue: deque[tuple[bytes, Reads | None]] = deque()
        self._queued_bytes = 0
        self._rate_bps: int | None = None
        self._trickle: asyncio.Task[None] | None = None
        self._reading = asyncio.Event()
        self._reading.set()
        self._cut: asyncio.Future[None] | None = None
        self._take_pending: Callable[[], list[Fault]] = list
        self._spawned: set[asyncio.Task[None]] = set()

    # --- plumbing ----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
        """A task of this session: in its task group, cancelled when the session ends."""
        assert self._tg is not None
        task = self._tg.create_task(coro, name=f"{self.sim.name}-{name}")
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    def _next_id(self) -> int:
        self._msg_id = (self._msg_id + 1) & 0xFFFFFFFF
        return self._msg_id

    def hang_up(self) -> None:
        """Drop the connection (unsent data too); the session ends as if the client left."""
        self._dead = True
        self._writer.transport.abort()

    def utc_us(self, t: float) -> int:
        """UTC microseconds of monotonic time ``t``."""
        return self._utc0_us + round((t - self._mono0) * 1_000_000)

    @property
    def closing(self) -> bool:
        return self._dead or self._writer.is_closing()

    def _send(self, data: bytes, what: Output, reads: Reads | None = None) -> bool:
        """Hand one whole message to the client (or to a fault); True if it will go out."""
        if self.closing:
            return False
        if self._hung and not (what == "report" and self._hung_reports):
            return False
        if self._cut is not None and not self._cut.done():
            # drop_mid_message: half of this message goes out, then the socket is dropped.
            self._writer.write(data[: max(1, len(data) // 2)])
            self._dead = True
            self._cut.set_result(None)
            return False
        if self._trickle is not None:
            if self._queued_bytes + len(data) > MAX_QUEUED_BYTES:
                self.sim._count("reports_dropped" if what == "report" else "messages_dropped")
                return False
            self._queue.append((data, reads))
            self._queued_bytes += len(data)
            return True
        self._writer.write(data)
        if reads is not None:
            self.sim._record(reads)
        return True

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            # The peer is gone; closing makes the receive loop see end-of-file.
            self._writer.close()

    # --- the connection ------------------------------------------------------------------------

    async def run(self, pending: Callable[[], list[Fault]]) -> None:
        """Serve the connection until the client closes it or asks to.

        Args:
            pending: takes the session faults waiting for a session; called once
                inventory first runs.
        """
        self._take_pending = pending
        peer = self._writer.get_extra_info("peername")
        logger.info("reader %s: client %s connected", self.sim.name, peer)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._send(
                    encode_connection_attempt(self._next_id(), self.utc_us(time.monotonic())),
                    "event",
                )
                await self._drain()
                try:
                    await self._receive_loop()
                finally:
                    self._dead = True
                    await self._stop_inventory(flush=False)
                    # Keepalive, timers, fault tasks: nothing of this session outlives it.
                    for task in list(self._spawned):
                        task.cancel()
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
            await self._reading.wait()
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
                self._send(encode_error_message(0, Status(code, str(err))), "response")
                await self._drain()
                return

    async def _handle(self, frame: Frame) -> bool:
        self.sim._count_request(frame.msg_type)
        if self._hung:
            return True  # a hung reader reads and answers nothing
        if frame.msg_type == self._error_on:
            self._error_on = None
            status = Status(StatusCode.DEVICE_ERROR, "simulated fault: the reader is busy")
            self._send(encode_error_message(frame.msg_id, status), "response")
            await self._drain()
            return True
        try:
            request = parse_request(frame)
        except RequestError as err:
            self._answer_error(frame.msg_type, frame.msg_id, err.status)
            await self._drain()
            return True
        handler = _HANDLERS.get(frame.msg_type)
        if handler is None:
            text = f"message type {frame.msg_type} is not supported"
            status = Status(StatusCode.UNSUPPORTED_MESSAGE, text)
            self._send(encode_error_message(frame.msg_id, status), "response")
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
            self._send(encode_response(msg_type, msg_id, status), "response")
        else:
            self._send(encode_error_message(msg_id, status), "response")

    def _ok(self, request: Request, extra: bytes = b"") -> bool:
        self._send(encode_response(request.msg_type, request.msg_id, SUCCESS, extra), "response")
        return True

    # --- events ------------------------------------------------------------------------------

    def _event(self, name: str, build: Callable[[int, int], bytes]) -> None:
        if self._events.get(name, False):
            self._send(build(self._next_id(), self.utc_us(time.monotonic())), "event")

    def antenna_changed(self, antenna: int, connected: bool) -> None:
        if antenna <= self.antennas:
            self._event(
                "AntennaEvent", lambda i, utc: encode_antenna_event(i, utc, antenna, connected)
            )

    def gpi_changed(self, port: int, high: bool, t: float) -> None:
        """A GPI port changed level at monotonic time ``t``."""
        if port in self._gpi_off:
            return
        self._gpi_edges[(port, high)] = t
        self._event("GPIEvent", lambda i, utc: encode_gpi_event(i, utc, port, high))
        if self._tg is None or self.closing:
            return
        for spec in self._rospecs.values():
            gpi = spec.spec.start.gpi
            if (
                spec.state is RoSpecState.INACTIVE
                and spec.spec.start_trigger is StartTrigger.GPI
                and gpi is not None
                and (gpi.port, gpi.event) == (port, high)
            ):
                self._spawn(self._start_inventory(spec), "gpi-start")
                break

    def gpi_since(self, trigger: GpiTrigger, since: float) -> bool:
        when = self._gpi_edges.get((trigger.port, trigger.event))
        return when is not None and when > since

    def aispec_ended(self, spec_index: int) -> None:
        spec = self._running
        if spec is not None:
            rospec_id = spec.spec.rospec_id
            self._event(
                "AISpecEvent", lambda i, utc: encode_aispec_event(i, utc, rospec_id, spec_index)
            )

    def _rospec_event(self, spec: _Spec, kind: RoSpecEventType) -> None:
        rospec_id = spec.spec.rospec_id
        self._event("ROSpecEvent", lambda i, utc: encode_rospec_event(i, utc, kind, rospec_id))

    # --- keepalive ---------------------------------------------------------------------------

    def _set_keepalive(self, interval_ms: int) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        self._keepalive_ms = interval_ms
        if interval_ms > 0 and self._tg is not None and not self._dead:
            interval = max(MIN_KEEPALIVE_S, interval_ms / 1000)
            self._keepalive = self._spawn(self._keepalive_loop(interval), "keepalive")

    async def _keepalive_loop(self, interval_s: float) -> None:
        while not self.closing:
            await asyncio.sleep(interval_s)
            if self._send(encode_keepalive(self._next_id()), "keepalive"):
                self.sim._count("keepalives")
            await self._drain()

    # --- inventory ---------------------------------------------------------------------------

    def driven_antennas(self, aispec: AiSpec) -> list[int]:
        wanted = range(1, self.antennas + 1) if ALL_ANTENNAS in aispec.antennas else aispec.antennas
        return [a for a in wanted if a <= self.antennas and self.sim.antenna_connected(a)]

    def round(
        self, t: float, dt: float, antennas: list[int], channel: int, n_tags: int
    ) -> list[str]:
        air = self._air
        observations = self.sim.field.observe(
            t, dt, air.drive(antennas) if air.loss_db else antennas, self.rng
        )
        if observations and air.floor_dbm:
            observations = heard(observations, air.floor_dbm)
        if observations and self._flags is not None:
            observations = self._flags.admit(observations, t)
        if not observations:
            return []
        utc = self.utc_us(t)
        window = self._window
        jitter = self.sim.timestamp_jitter_s
        rng = self.rng
        for epc, antenna, rssi in observations:
            stamp = utc + round(rng.gauss(0.0, jitter) * 1_000_000) if jitter else utc
            window.add(epc, antenna, rssi, stamp, channel)
            if n_tags and len(window) >= n_tags:
                self.flush()
                window = self._window
        return [o.epc_hex for o in observations]

    def flush(self) -> None:
        """Send the window as one RO_ACCESS_REPORT (nothing when it is empty)."""
        encoder = self._encoder
        if encoder is None or not len(self._window):
            return
        entries = self._window.drain()
        if self.closing:
            return
        try:
            data = encoder.encode(self._next_id(), entries)
        except EncodeError:
            logger.exception("reader %s: cannot encode a report; reads dropped", self.sim.name)
            return
        self._send(data, "report", [(e.epc_hex, e.antenna, e.seen_count) for e in entries])

    def drain(self) -> Awaitable[None]:
        return self._drain()

    async def _start_inventory(self, spec: _Spec) -> None:
        await self._stop_inventory(flush=True)
        if spec.state is not RoSpecState.INACTIVE or self.closing or self._tg is None:
            return
        spec.state = RoSpecState.ACTIVE
        plan = report_plan(
            spec.spec, self._default_report, self.sim.report_cycle_s, strict=self.sim.strict
        )
        self._plan = plan
        impinj = spec.spec.impinj_report if self._impinj else None
        self._encoder = ReportEncoder(
            plan.spec.selector,
            rospec_id=spec.spec.rospec_id,
            inventory_parameter_spec_id=spec.spec.inventory_parameter_spec_id,
            impinj_peak_rssi=bool(impinj and impinj[0]),
            impinj_phase=bool(impinj and impinj[1]),
        )
        air = air_settings(spec.spec.antenna_rf, self.sim.profile, impinj=self._impinj)
        self._air = air
        single = air.single_target_session
        self._flags = Flags(single) if single is not None else None
        self._window = ReadWindow()
        self._running = spec
        if self._empty_report_due:
            # A Zebra FX9600 sends an empty report before its first inventory.
            self._empty_report_due = False
            if self._send(message(MsgType.RO_ACCESS_REPORT, self._next_id()), "report"):
                self.sim._count("empty_reports")
        self._rospec_event(spec, RoSpecEventType.START)
        run = RoSpecRun(
            self,
            spec.spec,
            plan,
            round_s=self.sim.round_s,
            hops=len(self.sim.profile.hop_table_khz),
        )
        self._inventory = self._spawn(self._run_spec(spec, run), "inventory")
        if self.sim.replay_frames:
            self._replay = self._spawn(self._replay_loop(), "replay")
        self.sim._set_inventorying(True)
        if not self.inventory_started:
            self.inventory_started = True
            for fault in self._take_pending():
                self.apply(fault)

    async def _run_spec(self, spec: _Spec, run: RoSpecRun) -> None:
        ended = await run.run()
        if ended and self._inventory is asyncio.current_task():
            # The stop trigger fired: the ROSpec goes back to Inactive by itself.
            self._inventory = None
            self._finish(spec, flush=True)

    def _finish(self, spec: _Spec, *, flush: bool) -> None:
        if self._replay is not None:
            self._replay.cancel()
            self._replay = None
        plan = self._plan
        if flush and plan is not None and plan.at_rospec_end:
            self.flush()
        if spec.state is RoSpecState.ACTIVE:
            spec.state = RoSpecState.INACTIVE
        self._rospec_event(spec, RoSpecEventType.END)
        self._running = None
        if plan is None or plan.spec.trigger is not ReportTrigger.NONE:
            self._window = ReadWindow()
        self.sim._set_inventorying(False)

    async def _stop_inventory(self, *, flush: bool) -> None:
        task, self._inventory = self._inventory, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        spec = self._running
        if spec is not None:
            self._finish(spec, flush=flush)

    async def _replay_loop(self) -> None:
        sim = self.sim
        loops = sim.replay_loops
        done = 0
        while loops == 0 or done < loops:
            for frame in sim.replay_frames:
                self._send(frame.with_id(self._next_id()), "report", list(frame.reads))
                await self._drain()
                await asyncio.sleep(sim.replay_interval_s)
            done += 1

    def _arm(self, spec: _Spec) -> None:
        """Start the Periodic start trigger's timer of a ROSpec just enabled."""
        periodic = spec.spec.start.periodic
        if spec.spec.start_trigger is not StartTrigger.PERIODIC or periodic is None:
            return
        assert self._tg is not None
        now = time.monotonic()
        if periodic.utc_start_us is not None:
            first = now + (periodic.utc_start_us - self.utc_us(now)) / 1e6
        else:
            first = now
        first += periodic.offset_ms / 1000
        spec.armed = self._spawn(self._periodic(spec, first, periodic.period_ms / 1000), "periodic")

    async def _periodic(self, spec: _Spec, when: float, period_s: float) -> None:
        while True:
            await asyncio.sleep(max(0.0, when - time.monotonic()))
            if spec.state is RoSpecState.INACTIVE:
                await self._start_inventory(spec)
            if period_s <= 0:
                return
            when += period_s
            now = time.monotonic()
            if when < now:  # periods missed while the loop was busy are skipped
                when += math.ceil((now - when) / period_s) * period_s

    # --- faults --------------------------------------------------------------------------------

    def apply(self, fault: Fault) -> None:
        """Act out a session fault on this connection now."""
        logger.warning("reader %s: fault %s", self.sim.name, fault.describe())
        self.sim._count(f"fault_{fault.kind}")
        if fault.kind is FaultKind.DROP_MID_MESSAGE:
            self._spawn(self._drop_mid_message(), "drop")
        elif fault.kind is FaultKind.STOP_KEEPALIVES:
            self._hung = True
            self._hung_reports = fault.bool_("reports")
        elif fault.kind is FaultKind.GARBAGE:
            self._send(self._garbage(fault.int_("size"), fault.bool_("framed")), "raw")
        elif fault.kind is FaultKind.SLOW:
            self._spawn(self._slow(fault.float_("duration_s"), fault.int_("rate_bps")), "slow")

    def _garbage(self, size: int, framed: bool) -> bytes:
        noise = bytearray(self.rng.randbytes(size))
        if framed:
            # A report whose only parameter claims more bytes than the message holds:
            # framing stays intact, decoding it cannot succeed.
            body = bytes([0x00, 0xF0, 0xFF, 0xF0]) + bytes(noise)
            return message(MsgType.RO_ACCESS_REPORT, self._next_id(), body)
        # The first byte carries LLRP version 7 in the header's version bits: whatever the
        # rest says, a client's framer cannot take it for a message.
        noise[0] = 0xFF
        return bytes(noise)

    async def _drop_mid_message(self) -> None:
        """Cut the next message in half and drop the socket."""
        self._cut = asyncio.get_running_loop().create_future()
        if self._trickle is not None or self._hung:
            self._cut.set_result(None)  # nothing flows whole any more: drop at once
        await self._cut
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(DROP_GRACE_S * 10):
                await self._writer.drain()
        await asyncio.sleep(DROP_GRACE_S)
        self._writer.transport.abort()

    async def _slow(self, duration_s: float, rate_bps: int) -> None:
        """Back-pressure: stop reading the client and trickle output at ``rate_bps``."""
        self._rate_bps = rate_bps
        self._reading.clear()
        if self._trickle is None:
            self._trickle = self._spawn(self._trickle_loop(), "trickle")
        try:
            await asyncio.sleep(duration_s)
        finally:
            self._rate_bps = None
            self._reading.set()

    async def _trickle_loop(self) -> None:
        try:
            while not self.closing:
                if not self._queue:
                    if self._rate_bps is None:
                        return
                    await asyncio.sleep(TRICKLE_TICK_S)
                    continue
                data, reads = self._queue.popleft()
                self._queued_bytes -= len(data)
                offset = 0
                while offset < len(data) and not self.closing:
                    rate = self._rate_bps
                    step = len(data) if rate is None else max(1, int(rate * TRICKLE_TICK_S))
                    self._writer.write(data[offset : offset + step])
                    offset += step
                    await self._drain()
                    if rate is not None:
                        await asyncio.sleep(TRICKLE_TICK_S)
                if offset >= len(data) and reads is not None and not self.closing:
                    self.sim._record(reads)
        finally:
            self._trickle = None

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

    # --- handlers (one per request type; each writes exactly one response) -------------------

    async def _get_capabilities(self, request: Request) -> bool:
        assert isinstance(request, CapabilitiesRequest)
        self._send(
            encode_capabilities_response(
                request.msg_id,
                self.sim.profile,
                self.antennas,
                request.requested,
                rf_mode_table=not self.faults.no_rf_mode_table,
            ),
            "response",
        )
        return True

    async def _get_config(self, request: Request) -> bool:
        assert isinstance(request, ReaderConfigRequest)
        if request.antenna == ALL_ANTENNAS:
            ports = range(1, self.antennas + 1)
        elif request.antenna <= self.antennas:
            ports = range(request.antenna, request.antenna + 1)
        else:
            raise RequestError(
                Status(
                    StatusCode.FIELD_ERROR,
                    f"AntennaID {request.antenna} outside 1..{self.antennas}",
                    field_num=0,
                    field_error=StatusCode.A_OUT_OF_RANGE,
                )
            )
        profile = self.sim.profile
        for what, port, count in (
            ("GPIPortNum", request.gpi_port, profile.gpis),
            ("GPOPortNum", request.gpo_port, profile.gpos),
        ):
            if port > count:
                raise RequestError(
                    Status(StatusCode.FIELD_ERROR, f"{what} {port} outside 1..{count}", 0)
                )
        gpis = [
            (p, self.sim.gpi_level(p))
            for p in range(1, profile.gpis + 1)
            if request.gpi_port in (0, p)
        ]
        gpos = [
            (p, self.sim.gpo_level(p))
            for p in range(1, profile.gpos + 1)
            if request.gpo_port in (0, p)
        ]
        antennas = [
            AntennaState(a, self.sim.antenna_connected(a), profile.antenna_gain_centi_dbi)
            for a in ports
        ]
        self._send(
            encode_reader_config_response(
                request.msg_id,
                reader_mac=self.sim.mac,
                antennas=antennas,
                report_spec=self._default_report,
                keepalive_ms=self._keepalive_ms,
                requested=request.requested,
                gpis=gpis,
                gpos=gpos,
            ),
            "response",
        )
        return True

    async def _set_config(self, request: Request) -> bool:
        assert isinstance(request, SetReaderConfig)
        profile = self.sim.profile
        for what, ports, count in (
            ("GPOPortNumber", request.gpo_writes, profile.gpos),
            ("GPIPortNum", request.gpi_config, profile.gpis),
        ):
            beyond = [port for port, _ in ports if not 1 <= port <= count]
            if beyond:
                raise RequestError(
                    Status(
                        StatusCode.FIELD_ERROR,
                        f"{what} {beyond[0]} outside 1..{count}",
                        field_num=0,
                        field_error=StatusCode.A_OUT_OF_RANGE,
                    )
                )
        for port, enabled in request.gpi_config:
            if enabled:
                self._gpi_off.discard(port)
            else:
                self._gpi_off.add(port)
        if request.reset:
            self._default_report = ReportSpec()
            self._events = dict(DEFAULT_EVENTS)
            self._set_keepalive(0)
        if request.report is not None:
            self._default_report = request.report
        self._events.update(request.events)
        if request.keepalive_ms is not None:
            self._set_keepalive(request.keepalive_ms)
        for port, high in request.gpo_writes:
            self.sim._write_gpo(port, high)
        return self._ok(request)

    async def _close_connection(self, request: Request) -> bool:
        await self._stop_inventory(flush=True)
        self._ok(request)
        return False

    def _check_gpi(self, trigger: GpiTrigger | None, what: str) -> None:
        gpis = self.sim.profile.gpis
        if trigger is not None and trigger.port > gpis:
            raise RequestError(
                Status(
                    StatusCode.FIELD_ERROR,
                    f"{what} GPIPortNum {trigger.port} outside 1..{gpis}",
                    field_num=0,
                    field_error=StatusCode.A_OUT_OF_RANGE,
                )
            )

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
        beyond = [a for a in spec.antennas if a > self.antennas]
        if beyond:
            raise RequestError(
                Status(
                    StatusCode.FIELD_ERROR,
                    f"AntennaID {beyond[0]} outside 1..{self.antennas}",
                    field_num=0,
                    field_error=StatusCode.A_OUT_OF_RANGE,
                )
            )
        # The RF settings are checked now, so a value the reader lacks fails the ADD_ROSPEC.
        air_settings(spec.antenna_rf, self.sim.profile, impinj=self._impinj)
        self._check_gpi(spec.start.gpi, "ROSpecStartTrigger")
        self._check_gpi(spec.stop.gpi, "ROSpecStopTrigger")
        for aispec in spec.aispecs:
            self._check_gpi(aispec.stop.gpi, "AISpecStopTrigger")
        self._rospecs[spec.rospec_id] = _Spec(spec, RoSpecState.DISABLED)
        return self._ok(request)

    async def _delete_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        specs = self._specs(request.spec_id)
        if any(s.state is RoSpecState.ACTIVE for s in specs):
            await self._stop_inventory(flush=True)
        for spec in specs:
            spec.disarm()
            del self._rospecs[spec.spec.rospec_id]
        return self._ok(request)

    async def _enable_rospec(self, request: Request) -> bool:
        assert isinstance(request, SpecIdRequest)
        to_start: _Spec | None = None
        enabled = []
        for spec in self._specs(request.spec_id):
            if spec.state is RoSpecState.DISABLED:
                spec.state = RoSpecState.INACTIVE
                enabled.append(spec)
                if spec.spec.start_trigger is StartTrigger.IMMEDIATE:
                    to_start = spec
        # The response goes first: a client waits for it before it expects reports.
        self._ok(request)
        for spec in enabled:
            self._arm(spec)
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
            spec.disarm()
            spec.state = RoSpecState.DISABLED
        return self._ok(request)

    async def _get_rospecs(self, request: Request) -> bool:
        params = [spec.param() for spec in self._rospecs.values()]
        self._send(encode_get_rospecs_response(request.msg_id, params), "response")
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
        self._send(message(MsgType.GET_ACCESSSPECS_RESPONSE, request.msg_id, body), "response")
        return True

    async def _no_response(self, request: Request) -> bool:
        # ENABLE_EVENTS_AND_REPORTS: no response exists (an answer would kill sllurp).
        return True

    async def _get_report(self, request: Request) -> bool:
        self.flush()
        return True

    async def _keepalive_ack(self, request: Request) -> bool:
        self.sim._count("keepalive_acks")
        return True

    async def _custom(self, request: Request) -> bool:
        assert isinstance(request, CustomRequest)
        if (request.vendor_id, request.subtype) == (IMPINJ_VENDOR_ID, IMPINJ_ENABLE_EXTENSIONS):
            self._impinj = True
            self._send(
                encode_custom_response(
                    IMPINJ_VENDOR_ID, IMPINJ_ENABLE_EXTENSIONS_RESPONSE, request.msg_id, SUCCESS
                ),
                "response",
            )
            return True
        text = f"custom message {request.vendor_id}/{request.subtype} is not supported"
        status = Status(StatusCode.UNSUPPORTED_MESSAGE, text)
        self._send(encode_error_message(request.msg_id, status), "response")
        return True


_Handler = Callable[[Session, Request], Awaitable[bool]]

_HANDLERS: Mapping[int, _Handler] = {
    MsgType.GET_READER_CAPABILITIES: Session._get_capabilities,
    MsgType.GET_READER_CONFIG: Session._get_config,
    MsgType.SET_READER_CONFIG: Session._set_config,
    MsgType.CLOSE_CONNECTION: Session._close_connection,
    MsgType.ADD_ROSPEC: Session._add_rospec,
    MsgType.DELETE_ROSPEC: Session._delete_rospec,
    MsgType.START_ROSPEC: Session._start_rospec,
    MsgType.STOP_ROSPEC: Session._stop_rospec,
    MsgType.ENABLE_ROSPEC: Session._enable_rospec,
    MsgType.DISABLE_ROSPEC: Session._disable_rospec,
    MsgType.GET_ROSPECS: Session._get_rospecs,
    MsgType.ADD_ACCESSSPEC: Session._add_access_spec,
    MsgType.DELETE_ACCESSSPEC: Session._delete_access_spec,
    MsgType.ENABLE_ACCESSSPEC: Session._toggle_access_spec,
    MsgType.DISABLE_ACCESSSPEC: Session._toggle_access_spec,
    MsgType.GET_ACCESSSPECS: Session._get_access_specs,
    MsgType.ENABLE_EVENTS_AND_REPORTS: Session._no_response,
    MsgType.GET_REPORT: Session._get_report,
    MsgType.KEEPALIVE_ACK: Session._keepalive_ack,
    MsgType.CUSTOM_MESSAGE: Session._custom,
}
"""Request type → handler: the reader's behaviour as a table."""
