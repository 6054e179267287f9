"""What a simulated reader does with each LLRP request on one connection: its state machine.

``ReaderProtocol.handle`` takes one framed request, parses it (``llrp_requests``) and
answers it with exactly one response, by the table of handlers (the behaviour as data):
capabilities and reader configuration here, ROSpecs and AccessSpecs in ``specs.Specs``,
their inventory in ``inventory_host.InventoryHost``. It keeps what a client configures:
the default ROReportSpec, the reader events it enabled, the KEEPALIVE period (the timer
is the connection's), GPI ports switched off, Impinj extensions; and it sends the reader
events the simulator reports (AntennaEvent, GPIEvent).

Nothing here touches the socket: answers go out through the connection's ``Link``,
which is also where output faults act. Connection faults that change answers
(``ConnectionFaults``: an ERROR_MESSAGE for one request, fewer antennas, no RF mode
table, an empty first report) are applied here.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping

from edge.readers.llrp_codec import Frame
from firmware_sim.armed_faults import ConnectionFaults
from firmware_sim.inventory_host import InventoryHost
from firmware_sim.llrp_encode import (
    encode_antenna_event,
    encode_capabilities_response,
    encode_custom_response,
    encode_error_message,
    encode_gpi_event,
    encode_reader_config_response,
    encode_response,
)
from firmware_sim.llrp_params import RequestError
from firmware_sim.llrp_requests import (
    CapabilitiesRequest,
    CustomRequest,
    ReaderConfigRequest,
    Request,
    SetReaderConfig,
    parse_request,
)
from firmware_sim.llrp_rospec import ALL_ANTENNAS
from firmware_sim.llrp_types import (
    IMPINJ_ENABLE_EXTENSIONS,
    IMPINJ_ENABLE_EXTENSIONS_RESPONSE,
    IMPINJ_VENDOR_ID,
    RESPONSE_TYPES,
    SUCCESS,
    AntennaState,
    MsgType,
    ReportSpec,
    Status,
    StatusCode,
)
from firmware_sim.session_context import ClientConfig, Link, ReaderEvents, ReaderHost, send_ok
from firmware_sim.specs import Specs

Handler = Callable[[Request], Awaitable[bool]]
"""Answers one request; False when the connection is to close."""


class ReaderProtocol:
    """The LLRP state of one client connection and the answers to its requests.

    Args:
        host: the simulator.
        link: the connection the answers go out on.
        faults: the connection faults this connection took.
        rng: the session's randomness.
    """

    def __init__(
        self, host: ReaderHost, link: Link, faults: ConnectionFaults, rng: random.Random
    ) -> None:
        self._host = host
        self._link = link
        self._faults = faults
        self.antennas = faults.advertised_antennas or host.antennas
        """Antennas this connection was told about (a fault may advertise fewer)."""
        self._config = ClientConfig()
        self._events = ReaderEvents(link)
        self._keepalive_ms = 0
        self._gpi_off: set[int] = set()
        """GPI ports a client switched off (GPIConfig false): no events, no triggers."""
        self._error_on = faults.error_on
        self.inventory = InventoryHost(
            host,
            link,
            self._config,
            self._events,
            rng,
            self.antennas,
            empty_report=faults.empty_report,
        )
        specs = Specs(host, link, self._config, self.inventory, self.antennas)
        self._handlers: Mapping[int, Handler] = {
            MsgType.GET_READER_CAPABILITIES: self._get_capabilities,
            MsgType.GET_READER_CONFIG: self._get_config,
            MsgType.SET_READER_CONFIG: self._set_config,
            MsgType.CLOSE_CONNECTION: self._close_connection,
            MsgType.ADD_ROSPEC: specs.add_rospec,
            MsgType.DELETE_ROSPEC: specs.delete_rospec,
            MsgType.START_ROSPEC: specs.start_rospec,
            MsgType.STOP_ROSPEC: specs.stop_rospec,
            MsgType.ENABLE_ROSPEC: specs.enable_rospec,
            MsgType.DISABLE_ROSPEC: specs.disable_rospec,
            MsgType.GET_ROSPECS: specs.get_rospecs,
            MsgType.ADD_ACCESSSPEC: specs.add_access_spec,
            MsgType.DELETE_ACCESSSPEC: specs.delete_access_spec,
            MsgType.ENABLE_ACCESSSPEC: specs.toggle_access_spec,
            MsgType.DISABLE_ACCESSSPEC: specs.toggle_access_spec,
            MsgType.GET_ACCESSSPECS: specs.get_access_specs,
            MsgType.ENABLE_EVENTS_AND_REPORTS: self._no_response,
            MsgType.GET_REPORT: self._get_report,
            MsgType.KEEPALIVE_ACK: self._keepalive_ack,
            MsgType.CUSTOM_MESSAGE: self._custom,
        }
        """Request type → handler: the reader's behaviour as a table."""
        self._specs = specs

    async def handle(self, frame: Frame) -> bool:
        """Answer one request; False when the client asked to close the connection."""
        link = self._link
        if frame.msg_type == self._error_on:
            self._error_on = None
            status = Status(StatusCode.DEVICE_ERROR, "simulated fault: the reader is busy")
            link.send(encode_error_message(frame.msg_id, status), "response")
            await link.drain()
            return True
        try:
            request = parse_request(frame)
        except RequestError as err:
            self._answer_error(frame.msg_type, frame.msg_id, err.status)
            await link.drain()
            return True
        handler = self._handlers.get(frame.msg_type)
        if handler is None:
            text = f"message type {frame.msg_type} is not supported"
            status = Status(StatusCode.UNSUPPORTED_MESSAGE, text)
            link.send(encode_error_message(frame.msg_id, status), "response")
            keep_open = True
        else:
            try:
                keep_open = await handler(request)
            except RequestError as err:
                self._answer_error(frame.msg_type, frame.msg_id, err.status)
                keep_open = True
        await link.drain()
        return keep_open

    async def connection_lost(self) -> None:
        """The connection ended: inventory stops, with no last report."""
        await self.inventory.stop(flush=False)

    def _answer_error(self, msg_type: int, msg_id: int, status: Status) -> None:
        if msg_type in RESPONSE_TYPES:
            self._link.send(encode_response(msg_type, msg_id, status), "response")
        else:
            self._link.send(encode_error_message(msg_id, status), "response")

    # --- reader events ---------------------------------------------------------------------

    def antenna_changed(self, antenna: int, connected: bool) -> None:
        """An antenna port was plugged in or unplugged."""
        if antenna <= self.antennas:
            self._events.send(
                "AntennaEvent", lambda i, utc: encode_antenna_event(i, utc, antenna, connected)
            )

    def gpi_changed(self, port: int, high: bool, t: float) -> None:
        """A GPI port changed level at monotonic time ``t``."""
        if port in self._gpi_off:
            return
        self.inventory.note_gpi(port, high, t)
        self._events.send("GPIEvent", lambda i, utc: encode_gpi_event(i, utc, port, high))
        self._specs.gpi_changed(port, high)

    # --- handlers (one per request type; each writes exactly one response) -----------------

    async def _get_capabilities(self, request: Request) -> bool:
        assert isinstance(request, CapabilitiesRequest)
        self._link.send(
            encode_capabilities_response(
                request.msg_id,
                self._host.profile,
                self.antennas,
                request.requested,
                rf_mode_table=not self._faults.no_rf_mode_table,
            ),
            "response",
        )
        return True

    async def _get_config(self, request: Request) -> bool:
        assert isinstance(request, ReaderConfigRequest)
        host = self._host
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
        profile = host.profile
        for what, port, count in (
            ("GPIPortNum", request.gpi_port, profile.gpis),
            ("GPOPortNum", request.gpo_port, profile.gpos),
        ):
            if port > count:
                raise RequestError(
                    Status(StatusCode.FIELD_ERROR, f"{what} {port} outside 1..{count}", 0)
                )
        gpis = [
            (p, host.gpi_level(p)) for p in range(1, profile.gpis + 1) if request.gpi_port in (0, p)
        ]
        gpos = [
            (p, host.gpo_level(p)) for p in range(1, profile.gpos + 1) if request.gpo_port in (0, p)
        ]
        antennas = [
            AntennaState(a, host.antenna_connected(a), profile.antenna_gain_centi_dbi)
            for a in ports
        ]
        self._link.send(
            encode_reader_config_response(
                request.msg_id,
                reader_mac=host.mac,
                antennas=antennas,
                report_spec=self._config.default_report,
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
        profile = self._host.profile
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
            self._config.default_report = ReportSpec()
            self._events.reset()
            self._set_keepalive(0)
        if request.report is not None:
            self._config.default_report = request.report
        self._events.enable(request.events)
        if request.keepalive_ms is not None:
            self._set_keepalive(request.keepalive_ms)
        for port, high in request.gpo_writes:
            self._host.write_gpo(port, high)
        return send_ok(self._link, request)

    def _set_keepalive(self, interval_ms: int) -> None:
        self._keepalive_ms = interval_ms
        self._link.set_keepalive(interval_ms)

    async def _close_connection(self, request: Request) -> bool:
        await self.inventory.stop(flush=True)
        send_ok(self._link, request)
        return False

    async def _no_response(self, request: Request) -> bool:
        # ENABLE_EVENTS_AND_REPORTS: no response exists (an answer would kill sllurp).
        return True

    async def _get_report(self, request: Request) -> bool:
        self.inventory.flush()
        return True

    async def _keepalive_ack(self, request: Request) -> bool:
        self._host.counters.count("keepalive_acks")
        return True

    async def _custom(self, request: Request) -> bool:
        assert isinstance(request, CustomRequest)
        if (request.vendor_id, request.subtype) == (IMPINJ_VENDOR_ID, IMPINJ_ENABLE_EXTENSIONS):
            self._config.impinj = True
            self._link.send(
                encode_custom_response(
                    IMPINJ_VENDOR_ID, IMPINJ_ENABLE_EXTENSIONS_RESPONSE, request.msg_id, SUCCESS
                ),
                "response",
            )
            return True
        text = f"custom message {request.vendor_id}/{request.subtype} is not supported"
        status = Status(StatusCode.UNSUPPORTED_MESSAGE, text)
        self._link.send(encode_error_message(request.msg_id, status), "response")
        return True
