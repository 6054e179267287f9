"""A minimal conformant LLRP client, to drive a reader and see what it sends.

The probe frames and decodes with the project's codec (``edge.readers.llrp_codec``),
builds its ROSpec with sllurp's builder, answers KEEPALIVEs, and keeps every tag read
it receives as a typed ``ProbeRead``. It is test and demo tooling, not the edge's
client: it gives up (``ProbeError``) on anything unexpected instead of recovering.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

from sllurp.llrp_proto import LLRPROSpec

from edge.readers.llrp_codec import (
    HEADER_LEN,
    Frame,
    LlrpCodecError,
    LlrpFramer,
    decode,
    encode,
)
from firmware_sim.errors import ProbeError
from firmware_sim.llrp_encode import message, report_spec_param, tlv
from firmware_sim.llrp_triggers import (
    AISPEC,
    AISPEC_STOP_TRIGGER,
    GPI_TRIGGER_VALUE,
    INVENTORY_PARAMETER_SPEC,
    PERIODIC_TRIGGER_VALUE,
    RO_BOUNDARY_SPEC,
    ROSPEC,
    ROSPEC_START_TRIGGER,
    ROSPEC_STOP_TRIGGER,
    TAG_OBSERVATION_TRIGGER,
    UTC_TIMESTAMP,
    AiSpecStop,
    AiStopSpec,
    GpiTrigger,
    RoSpecStop,
    StartSpec,
    StartTrigger,
    StopSpec,
)
from firmware_sim.llrp_types import ContentSelector, MsgType, ParamType, ReportSpec, StatusCode
from plumbing.streams import close_writer

_NULL_AI = AiSpecStop.NULL

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S: Final = 5.0
READ_CHUNK: Final = 64 * 1024
MAX_QUEUED: Final = 1000
_SELECTOR_KEYS: Final = (
    ("EnableROSpecID", "rospec_id"),
    ("EnableSpecIndex", "spec_index"),
    ("EnableInventoryParameterSpecID", "inventory_parameter_spec_id"),
    ("EnableAntennaID", "antenna_id"),
    ("EnableChannelIndex", "channel_index"),
    ("EnablePeakRSSI", "peak_rssi"),
    ("EnableFirstSeenTimestamp", "first_seen"),
    ("EnableLastSeenTimestamp", "last_seen"),
    ("EnableTagSeenCount", "tag_seen_count"),
    ("EnableAccessSpecID", "access_spec_id"),
)


@dataclass(frozen=True, slots=True)
class ProbeRead:
    """One TagReportData as the probe received it (None: the reader left it out)."""

    epc_hex: str
    antenna: int | None
    rssi: int | None
    first_seen_us: int | None
    last_seen_us: int | None
    seen_count: int | None


@dataclass(frozen=True, slots=True)
class Response:
    """A response message: its type, id, LLRPStatus code and the whole frame."""

    msg_type: int
    msg_id: int
    status: StatusCode
    description: str
    raw: bytes = field(repr=False)


def _status(frame: Frame) -> tuple[StatusCode, str]:
    body = frame.raw[HEADER_LEN:]
    if frame.msg_type == MsgType.CUSTOM_MESSAGE:
        body = body[5:]  # vendor id and subtype
    if len(body) < 8:
        raise ProbeError(f"message type {frame.msg_type} carries no LLRPStatus")
    param_type, _, code, length = struct.unpack_from("!HHHH", body)
    if param_type & 0x3FF != ParamType.LLRP_STATUS:
        raise ProbeError(f"message type {frame.msg_type}: first parameter is not LLRPStatus")
    try:
        status = StatusCode(code)
    except ValueError as err:
        raise ProbeError(f"unknown LLRPStatus code {code}") from err
    return status, body[8 : 8 + length].decode("utf-8", errors="replace")


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reads(body: Mapping[str, Any]) -> list[ProbeRead]:
    reads = []
    for tag in body.get("TagReportData") or ():
        epc = tag.get("EPC", tag.get("EPC-96"))
        if not isinstance(epc, bytes | bytearray):
            raise ProbeError(f"TagReportData without an EPC: {sorted(tag)}")
        reads.append(
            ProbeRead(
                epc_hex=bytes(epc).decode("ascii").lower(),
                antenna=_int_or_none(tag.get("AntennaID")),
                rssi=_int_or_none(tag.get("PeakRSSI")),
                first_seen_us=_int_or_none(tag.get("FirstSeenTimestampUTC")),
                last_seen_us=_int_or_none(tag.get("LastSeenTimestampUTC")),
                seen_count=_int_or_none(tag.get("TagSeenCount")),
            )
        )
    return reads


class LlrpProbe:
    """Connects to an LLRP reader, checks its greeting and collects its reports.

    Args:
        host: reader address.
        port: reader TCP port.
        timeout: seconds to wait for the greeting and for each response.
    """

    def __init__(self, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.reads: list[ProbeRead] = []
        self.reports = 0
        self.report_sizes: list[int] = []
        """TagReportData entries in each report, in arrival order."""
        self.report_raw: list[bytes] = []
        """Each RO_ACCESS_REPORT as received (the last ``MAX_QUEUED`` of them)."""
        self.keepalives = 0
        self.events: list[Frame] = []
        """READER_EVENT_NOTIFICATIONs after the greeting, as received."""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._responses: asyncio.Queue[Frame] = asyncio.Queue(MAX_QUEUED)
        self._task: asyncio.Task[None] | None = None
        self._msg_id = 1000
        self._closed = asyncio.Event()

    async def __aenter__(self) -> Self:
        try:
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                framer = LlrpFramer()
                greeting = await self._first_frame(framer)
        except (OSError, TimeoutError) as err:
            await self._close_writer()
            raise ProbeError(f"no LLRP greeting from {self.host}:{self.port}: {err}") from err
        try:
            body = decode(greeting).body
        except LlrpCodecError as err:
            await self._close_writer()
            raise ProbeError(f"undecodable greeting: {err}") from err
        attempt = body.get("ReaderEventNotificationData", {}).get("ConnectionAttemptEvent", {})
        if attempt.get("Status") != "Success":
            await self._close_writer()
            raise ProbeError(f"connection attempt refused: {attempt.get('Status')!r}")
        self._task = asyncio.create_task(self._receive(framer), name="llrp-probe")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        await self._close_writer()

    async def _close_writer(self) -> None:
        if self._writer is not None:
            await close_writer(self._writer, self.timeout)

    async def _first_frame(self, framer: LlrpFramer) -> Frame:
        assert self._reader is not None
        while True:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise ProbeError("the reader closed the connection before greeting")
            frames = list(framer.feed(data))
            if frames:
                first, rest = frames[0], frames[1:]
                if first.msg_type != MsgType.READER_EVENT_NOTIFICATION:
                    raise ProbeError(f"first message is type {first.msg_type}, not an event")
                for frame in rest:
                    self._dispatch(frame)
                return first

    async def _receive(self, framer: LlrpFramer) -> None:
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    return
                for frame in framer.feed(data):
                    self._dispatch(frame)
        except (OSError, LlrpCodecError, ProbeError) as err:
            logger.warning("probe: receive ended: %s", err)
        finally:
            self._closed.set()

    def _dispatch(self, frame: Frame) -> None:
        if frame.msg_type == MsgType.RO_ACCESS_REPORT:
            reads = _reads(decode(frame).body)
            self.report_raw.append(frame.raw)
            if len(self.report_raw) > MAX_QUEUED:
                del self.report_raw[0]
            self.reports += 1
            self.report_sizes.append(len(reads))
            self.reads.extend(reads)
        elif frame.msg_type == MsgType.KEEPALIVE:
            self.keepalives += 1
            self._send(encode({"KEEPALIVE_ACK": {"ID": frame.msg_id}}))
        elif frame.msg_type == MsgType.READER_EVENT_NOTIFICATION:
            self.events.append(frame)
        else:
            self._responses.put_nowait(frame)

    def _send(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ProbeError("the probe is not connected")
        self._writer.write(data)

    def next_id(self) -> int:
        self._msg_id += 1
        return self._msg_id

    @property
    def closed_by_reader(self) -> bool:
        """True once the reader has closed the connection."""
        return self._closed.is_set()

    async def wait_closed_by_reader(self) -> None:
        async with asyncio.timeout(self.timeout):
            await self._closed.wait()

    async def request(self, msg: Mapping[str, Any] | bytes, expect: int) -> Response:
        """Send a request and wait for the message of type ``expect``.

        Args:
            msg: a sllurp message dict (``{"NAME": {...}}``) or a whole encoded message.
            expect: the response type to wait for.

        Raises:
            ProbeError: another message type came, or none within the timeout.
        """
        data = msg if isinstance(msg, bytes) else encode(dict(msg))
        self._send(data)
        assert self._writer is not None
        await self._writer.drain()
        try:
            async with asyncio.timeout(self.timeout):
                frame = await self._responses.get()
        except TimeoutError as err:
            raise ProbeError(f"no response of type {expect} within {self.timeout} s") from err
        if frame.msg_type != expect:
            raise ProbeError(f"expected message type {expect}, got {frame.msg_type}")
        status, description = _status(frame)
        return Response(frame.msg_type, frame.msg_id, status, description, frame.raw)

    async def call(self, name: str, body: Mapping[str, Any] | None = None) -> Response:
        """Send the request ``name`` (sllurp's message name) and check for Success.

        Raises:
            ProbeError: no response, or a status other than Success.
        """
        request_type = MsgType[name]
        response_type = MsgType[f"{name}_RESPONSE"]
        msg = {name: {**(body or {}), "ID": self.next_id()}}
        response = await self.request(msg, response_type)
        if response.status is not StatusCode.SUCCESS:
            raise ProbeError(f"{request_type.name}: {response.status.name} {response.description}")
        return response

    async def start_inventory(
        self,
        *,
        antennas: tuple[int, ...] = (0,),
        selector: ContentSelector | None = None,
        report_every_n_tags: int = 0,
        aispec_duration_ms: int | None = None,
        rospec_id: int = 1,
    ) -> None:
        """Delete every ROSpec, add one for continuous inventory and enable it.

        Raises:
            ProbeError: the reader refused a step.
        """
        chosen = selector or ContentSelector()
        content = {key: getattr(chosen, attr) for key, attr in _SELECTOR_KEYS}
        spec: dict[str, Any] = LLRPROSpec(
            None, rospec_id, antennas=antennas, tag_content_selector=content
        )
        for config in spec["AISpec"][0]["InventoryParameterSpec"][0]["AntennaConfiguration"]:
            config.pop("RFTransmitter", None)
        if aispec_duration_ms is not None:
            spec["AISpec"][0]["AISpecStopTrigger"] = {
                "AISpecStopTriggerType": "Duration",
                "DurationTriggerValue": aispec_duration_ms,
            }
        spec["ROReportSpec"]["N"] = report_every_n_tags
        await self.call("DELETE_ROSPEC", {"ROSpecID": 0})
        await self.call("ADD_ROSPEC", {"ROSpec": spec})
        await self.call("ENABLE_ROSPEC", {"ROSpecID": rospec_id})

    async def stop_inventory(self) -> None:
        """Delete every ROSpec; reports the reader sends first are collected."""
        await self.call("DELETE_ROSPEC", {"ROSpecID": 0})

    async def add_rospec(self, param: bytes, *, enable: bool = True) -> None:
        """ADD_ROSPEC of a raw ROSpec parameter (see ``rospec_param``), then ENABLE_ROSPEC.

        Raises:
            ProbeError: the reader refused either.
        """
        (rospec_id,) = struct.unpack_from("!I", param, 4)
        added = await self.request(
            raw_request(MsgType.ADD_ROSPEC, self.next_id(), param), MsgType.ADD_ROSPEC_RESPONSE
        )
        if added.status is not StatusCode.SUCCESS:
            raise ProbeError(f"ADD_ROSPEC: {added.status.name} {added.description}")
        if enable:
            await self.call("ENABLE_ROSPEC", {"ROSpecID": rospec_id})

    async def enable_events(self, **states: bool) -> None:
        """SET_READER_CONFIG turning reader events on or off (sllurp's event names)."""
        await self.call(
            "SET_READER_CONFIG",
            {"ReaderEventNotificationSpec": {"EventNotificationState": dict(states)}},
        )

    def event_data(self) -> list[dict[str, Any]]:
        """The ReaderEventNotificationData of every event after the greeting, in order."""
        out = []
        for frame in self.events:
            data = decode(frame).body.get("ReaderEventNotificationData", {})
            out.append({k: v for k, v in data.items() if k != "UTCTimestamp"})
        return out

    def counts(self) -> Counter[tuple[str, int]]:
        """Reads received by (EPC hex, antenna): the sum of TagSeenCount (1 if absent)."""
        counts: Counter[tuple[str, int]] = Counter()
        for read in self.reads:
            counts[(read.epc_hex, read.antenna or 0)] += read.seen_count or 1
        return counts


def raw_request(msg_type: int, msg_id: int, body: bytes = b"") -> bytes:
    """A whole request sllurp cannot encode (e.g. GET_ROSPECS), for ``request``."""
    return message(msg_type, msg_id, body)


# --- ROSpecs with any trigger (sllurp's builder makes only Immediate/Null/Duration) -------------


def _gpi_param(gpi: GpiTrigger, param_type: int) -> bytes:
    return tlv(param_type, struct.pack("!HBI", gpi.port, 0x80 if gpi.event else 0, gpi.timeout_ms))


def rospec_param(
    rospec_id: int = 1,
    *,
    start: StartSpec | None = None,
    stop: StopSpec | None = None,
    aispecs: tuple[tuple[tuple[int, ...], AiStopSpec], ...] = (((0,), AiStopSpec(_NULL_AI)),),
    report: ReportSpec | None = None,
    gpi_param_type: int = GPI_TRIGGER_VALUE,
) -> bytes:
    """A whole ROSpec parameter (TLV 177) with the given triggers, built byte by byte.

    Args:
        rospec_id: the ROSpecID.
        start: the start trigger (Immediate by default).
        stop: the stop trigger (Null by default).
        aispecs: (antenna ids, stop trigger) of each AISpec.
        report: the ROSpec's ROReportSpec (None: the reader's default applies).
        gpi_param_type: 181 as LLRP says, or 180 to send GPITriggerValue as sllurp does.
    """
    start = start or StartSpec(StartTrigger.IMMEDIATE)
    stop = stop or StopSpec(RoSpecStop.NULL)
    start_body = struct.pack("!B", start.kind)
    if start.periodic is not None:
        periodic = struct.pack("!II", start.periodic.offset_ms, start.periodic.period_ms)
        if start.periodic.utc_start_us is not None:
            periodic += tlv(UTC_TIMESTAMP, struct.pack("!Q", start.periodic.utc_start_us))
        start_body += tlv(PERIODIC_TRIGGER_VALUE, periodic)
    if start.gpi is not None:
        start_body += _gpi_param(start.gpi, gpi_param_type)
    stop_body = struct.pack("!BI", stop.kind, stop.duration_ms)
    if stop.gpi is not None:
        stop_body += _gpi_param(stop.gpi, gpi_param_type)
    boundary = tlv(
        RO_BOUNDARY_SPEC,
        tlv(ROSPEC_START_TRIGGER, start_body) + tlv(ROSPEC_STOP_TRIGGER, stop_body),
    )
    parts = [struct.pack("!IBB", rospec_id, 0, 0), boundary]
    for index, (antennas, ai_stop) in enumerate(aispecs, start=1):
        ai_body = struct.pack("!BI", ai_stop.kind, ai_stop.duration_ms)
        if ai_stop.gpi is not None:
            ai_body += _gpi_param(ai_stop.gpi, gpi_param_type)
        if ai_stop.observation is not None:
            o = ai_stop.observation
            ai_body += tlv(
                TAG_OBSERVATION_TRIGGER,
                struct.pack("!BBHHHI", o.kind, 0, o.n_tags, o.n_attempts, o.t_ms, o.timeout_ms),
            )
        ips = tlv(INVENTORY_PARAMETER_SPEC, struct.pack("!HB", index, 1))
        head = struct.pack(f"!H{len(antennas)}H", len(antennas), *antennas)
        parts.append(tlv(AISPEC, head + tlv(AISPEC_STOP_TRIGGER, ai_body) + ips))
    if report is not None:
        parts.append(report_spec_param(report))
    return tlv(ROSPEC, b"".join(parts))


def gpo_write_config(msg_id: int, writes: tuple[tuple[int, bool], ...]) -> bytes:
    """SET_READER_CONFIG carrying GPOWriteData (sllurp cannot encode that parameter)."""
    body = b"\x00" + b"".join(
        tlv(ParamType.GPO_WRITE_DATA, struct.pack("!HB", port, 0x80 if high else 0))
        for port, high in writes
    )
    return message(MsgType.SET_READER_CONFIG, msg_id, body)
