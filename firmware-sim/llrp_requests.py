"""Client→reader LLRP requests, parsed into typed values (sans-I/O).

Frames come from ``edge.readers.llrp_codec.LlrpFramer``. sllurp 3.0.5 has no message
decoder for any client request (``llrp_codec.decode`` answers "Cannot find decoder for
message type N" for every one of them), so bodies are read here: fixed fields with
``struct``, and parameter trees (KeepaliveSpec, ROReportSpec, ...) with sllurp's own
*parameter* decoders (``llrp_params``); a ROSpec is ``llrp_rospec``'s. sllurp's dicts
stop there; what leaves is typed.

A request that cannot be taken raises ``RequestError`` carrying the LLRPStatus the
reader answers with; the stream stays in sync because framing is separate.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from edge.readers.llrp_codec import HEADER_LEN, Frame
from firmware_sim.llrp_params import (
    RequestError,
    decode_params,
    enum_field,
    field_error,
    int_field,
    mapping_field,
    parameter_error,
    report_spec,
)
from firmware_sim.llrp_rospec import RoSpec, parse_rospec
from firmware_sim.llrp_triggers import TriggerError, children
from firmware_sim.llrp_types import CapabilitySet, MsgType, ReportSpec, Status, StatusCode

MAX_REQUEST_FRAME: Final = 256 * 1024
"""Largest request a simulated reader accepts; client requests are a few hundred bytes."""
ALL_SPECS: Final = 0
"""A ROSpecID or AccessSpecID that stands for every spec."""

_U32 = struct.Struct("!I")
_KEEPALIVE_NAMES = {"Null": 0, "Immediate": 1}


@dataclass(frozen=True, slots=True)
class Request:
    """A request with no fields the simulator uses (or none at all)."""

    msg_type: int
    msg_id: int


@dataclass(frozen=True, slots=True)
class SpecIdRequest(Request):
    """DELETE/START/STOP/ENABLE/DISABLE of a ROSpec or AccessSpec: one 32-bit id."""

    spec_id: int


@dataclass(frozen=True, slots=True)
class CapabilitiesRequest(Request):
    requested: CapabilitySet


@dataclass(frozen=True, slots=True)
class ReaderConfigRequest(Request):
    requested: int
    antenna: int
    """0 asks about every antenna."""
    gpi_port: int = 0
    """0 asks about every GPI port."""
    gpo_port: int = 0
    """0 asks about every GPO port."""


@dataclass(frozen=True, slots=True)
class SetReaderConfig(Request):
    reset: bool
    keepalive_ms: int | None
    """New KEEPALIVE period (0 turns them off); None leaves it as it was."""
    report: ReportSpec | None
    events: Mapping[str, bool]
    """EventNotificationState changes by sllurp's event name (e.g. "AntennaEvent")."""
    gpo_writes: tuple[tuple[int, bool], ...] = ()
    """GPOWriteData parameters in order: (GPOPortNumber, GPOData)."""
    gpi_config: tuple[tuple[int, bool], ...] = ()
    """GPIPortCurrentState parameters: (GPIPortNum, GPIConfig), i.e. port on or off."""


@dataclass(frozen=True, slots=True)
class AddRoSpec(Request):
    rospec: RoSpec


@dataclass(frozen=True, slots=True)
class AddAccessSpec(Request):
    access_spec_id: int
    raw: bytes = field(repr=False)
    """The AccessSpec parameter bytes, kept to answer GET_ACCESSSPECS."""


@dataclass(frozen=True, slots=True)
class CustomRequest(Request):
    vendor_id: int
    subtype: int


# --- message parsers ----------------------------------------------------------------------------


def _spec_id(frame: Frame, body: bytes) -> Request:
    if len(body) < 4:
        raise field_error("spec id missing", field_num=0)
    (spec_id,) = _U32.unpack_from(body)
    return SpecIdRequest(frame.msg_type, frame.msg_id, spec_id)


def _capabilities(frame: Frame, body: bytes) -> Request:
    if len(body) < 1:
        raise field_error("RequestedData missing")
    try:
        requested = CapabilitySet(body[0])
    except ValueError as err:
        raise field_error(f"RequestedData {body[0]} unknown") from err
    return CapabilitiesRequest(frame.msg_type, frame.msg_id, requested)


def _reader_config(frame: Frame, body: bytes) -> Request:
    if len(body) < 3:
        raise field_error("AntennaID/RequestedData missing")
    # LLRP 1.0.1 §16.1.4: AntennaID (u16), RequestedData (u8), GPI/GPO port numbers.
    antenna, requested = struct.unpack_from("!HB", body)
    gpi = gpo = 0
    if len(body) >= 7:
        gpi, gpo = struct.unpack_from("!HH", body, 3)
    return ReaderConfigRequest(frame.msg_type, frame.msg_id, requested, antenna, gpi, gpo)


def _events(spec: object) -> dict[str, bool]:
    states = mapping_field(spec, "ReaderEventNotificationSpec").get("EventNotificationState") or []
    if not isinstance(states, list):
        raise parameter_error("EventNotificationState malformed")
    events: dict[str, bool] = {}
    for state in states:
        entry = mapping_field(state, "EventNotificationState")
        events[str(entry.get("EventType"))] = bool(entry.get("NotificationState"))
    return events


def _set_reader_config(frame: Frame, body: bytes) -> Request:
    if len(body) < 1:
        raise field_error("ResetToFactoryDefaults missing")
    reset = bool(body[0] & 0x80)
    params = decode_params(body[1:], "SET_READER_CONFIG")
    keepalive_ms: int | None = None
    if "KeepaliveSpec" in params:
        keepalive = mapping_field(params["KeepaliveSpec"], "KeepaliveSpec")
        kind = enum_field(
            keepalive.get("KeepaliveTriggerType", 0), _KEEPALIVE_NAMES, "KeepaliveTriggerType"
        )
        interval = int_field(keepalive.get("TimeInterval", 0), "KeepaliveSpec TimeInterval")
        keepalive_ms = interval if kind == 1 else 0
    report = report_spec(params["ROReportSpec"]) if "ROReportSpec" in params else None
    events = (
        _events(params["ReaderEventNotificationSpec"])
        if "ReaderEventNotificationSpec" in params
        else {}
    )
    gpo = _port_flags(body[1:], _GPO_WRITE_DATA, "GPOWriteData")
    gpi = _port_flags(body[1:], _GPI_PORT_CURRENT_STATE, "GPIPortCurrentState")
    return SetReaderConfig(
        frame.msg_type, frame.msg_id, reset, keepalive_ms, report, events, gpo, gpi
    )


_GPO_WRITE_DATA: Final = 219
_GPI_PORT_CURRENT_STATE: Final = 225


def _port_flags(body: bytes, param_type: int, what: str) -> tuple[tuple[int, bool], ...]:
    # Read from the TLVs: sllurp keeps only the last of several, and cannot read
    # GPOWriteData written by anyone but itself.
    found = []
    try:
        for kind, value in children(body, "SET_READER_CONFIG"):
            if kind == param_type:
                if len(value) < 3:
                    raise parameter_error(f"{what} is shorter than 3 bytes")
                port, flags = struct.unpack_from("!HB", value)
                found.append((port, bool(flags & 0x80)))
    except TriggerError as err:
        raise RequestError(err.status) from err
    return tuple(found)


def _add_rospec(frame: Frame, body: bytes) -> Request:
    if len(body) < 4:
        raise RequestError(Status(StatusCode.MISSING_PARAMETER, "ADD_ROSPEC has no ROSpec"))
    (length,) = struct.unpack_from("!H", body, 2)
    return AddRoSpec(frame.msg_type, frame.msg_id, parse_rospec(body[:length]))


_ACCESS_SPEC = 207


def _add_accessspec(frame: Frame, body: bytes) -> Request:
    # Only the id is read: the simulator stores AccessSpecs but runs no tag operations.
    if len(body) < 8 or (struct.unpack_from("!H", body)[0] & 0x3FF) != _ACCESS_SPEC:
        raise RequestError(Status(StatusCode.MISSING_PARAMETER, "ADD_ACCESSSPEC has no AccessSpec"))
    (length,) = struct.unpack_from("!H", body, 2)
    (spec_id,) = _U32.unpack_from(body, 4)
    if spec_id == ALL_SPECS:
        raise field_error("AccessSpecID 0 is reserved", field_num=0)
    return AddAccessSpec(frame.msg_type, frame.msg_id, spec_id, body[:length])


def _custom(frame: Frame, body: bytes) -> Request:
    if len(body) < 5:
        raise field_error("custom message without vendor id and subtype")
    vendor_id, subtype = struct.unpack_from("!IB", body)
    return CustomRequest(frame.msg_type, frame.msg_id, vendor_id, subtype)


def _plain(frame: Frame, body: bytes) -> Request:
    return Request(frame.msg_type, frame.msg_id)


_Parser = Callable[[Frame, bytes], Request]

_PARSERS: Mapping[int, _Parser] = {
    MsgType.GET_READER_CAPABILITIES: _capabilities,
    MsgType.GET_READER_CONFIG: _reader_config,
    MsgType.SET_READER_CONFIG: _set_reader_config,
    MsgType.ADD_ROSPEC: _add_rospec,
    MsgType.DELETE_ROSPEC: _spec_id,
    MsgType.START_ROSPEC: _spec_id,
    MsgType.STOP_ROSPEC: _spec_id,
    MsgType.ENABLE_ROSPEC: _spec_id,
    MsgType.DISABLE_ROSPEC: _spec_id,
    MsgType.ADD_ACCESSSPEC: _add_accessspec,
    MsgType.DELETE_ACCESSSPEC: _spec_id,
    MsgType.ENABLE_ACCESSSPEC: _spec_id,
    MsgType.DISABLE_ACCESSSPEC: _spec_id,
    MsgType.CUSTOM_MESSAGE: _custom,
}


def parse_request(frame: Frame) -> Request:
    """Turn one framed client message into a typed request.

    Message types without fields the simulator uses (CLOSE_CONNECTION, KEEPALIVE_ACK,
    GET_ROSPECS, ...) and unknown types come back as a plain ``Request``.

    Raises:
        RequestError: the body is malformed; carries the status to answer with.
    """
    parser = _PARSERS.get(frame.msg_type, _plain)
    return parser(frame, frame.raw[HEADER_LEN:])
