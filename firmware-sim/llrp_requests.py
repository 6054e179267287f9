"""Client→reader LLRP requests, parsed into typed values (sans-I/O).

Frames come from ``edge.readers.llrp_codec.LlrpFramer``. sllurp 3.0.5 has no message
decoder for any client request (``llrp_codec.decode`` answers "Cannot find decoder for
message type N" for every one of them), so bodies are read here: fixed fields with
``struct``, and parameter trees (ROSpec, KeepaliveSpec, ROReportSpec, ...) with sllurp's
own *parameter* decoders. sllurp's dicts stop in this module; what leaves it is typed.

A request that cannot be taken raises ``RequestError`` carrying the LLRPStatus the
reader answers with; the stream stays in sync because framing is separate.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from sllurp.llrp_errors import LLRPError
from sllurp.llrp_proto import decode_all_parameters

from edge.readers.llrp_codec import HEADER_LEN, Frame
from firmware_sim.errors import SimError
from firmware_sim.llrp_encode import (
    CapabilitySet,
    ContentSelector,
    MsgType,
    ParamType,
    ReportSpec,
    ReportTrigger,
    Status,
    StatusCode,
)
from firmware_sim.llrp_triggers import (
    AiSpec,
    RoSpecStop,
    StartSpec,
    StopSpec,
    TriggerError,
    children,
    parse_triggers,
)
from firmware_sim.llrp_triggers import AiSpecStop as AiSpecStop
from firmware_sim.llrp_triggers import StartTrigger as StartTrigger

MAX_REQUEST_FRAME: Final = 256 * 1024
"""Largest request a simulated reader accepts; client requests are a few hundred bytes."""
ALL_SPECS: Final = 0
ALL_ANTENNAS: Final = 0

_U32 = struct.Struct("!I")


class RequestError(SimError):
    """A request the reader refuses; ``status`` is what goes back in the response."""

    def __init__(self, status: Status) -> None:
        super().__init__(status.description or status.code.name)
        self.status = status


def _field_error(description: str, field_num: int = 0) -> RequestError:
    return RequestError(Status(StatusCode.FIELD_ERROR, description, field_num=field_num))


def _parameter_error(description: str) -> RequestError:
    return RequestError(Status(StatusCode.PARAMETER_ERROR, description))


class RoSpecState(IntEnum):
    """ROSpec CurrentState."""

    DISABLED = 0
    INACTIVE = 1
    ACTIVE = 2


@dataclass(frozen=True, slots=True)
class AntennaRf:
    """One AntennaConfiguration of a ROSpec's InventoryParameterSpec (None: not sent)."""

    antenna: int
    power_index: int | None = None
    """RFTransmitter TransmitPower: an index into the reader's power table."""
    sensitivity_index: int | None = None
    """RFReceiver ReceiverSensitivity: an index into the sensitivity table."""
    mode_id: int | None = None
    """C1G2RFControl ModeIndex (a ModeIdentifier, as Impinj readers read it)."""
    session: int | None = None
    tag_population: int | None = None
    search_mode: int | None = None
    """ImpinjInventorySearchMode (an Impinj extension)."""


@dataclass(frozen=True, slots=True)
class RoSpec:
    """What the simulator needs from an ADD_ROSPEC, plus the parameter as sent."""

    rospec_id: int
    priority: int
    current_state: RoSpecState
    start: StartSpec
    stop: StopSpec
    aispecs: tuple[AiSpec, ...]
    inventory_parameter_spec_id: int
    """The first AISpec's InventoryParameterSpecID."""
    report: ReportSpec | None
    """The ROSpec's own ROReportSpec; None means the reader's default applies."""
    raw: bytes = field(repr=False)
    """The ROSpec parameter bytes, kept to answer GET_ROSPECS."""
    antenna_rf: tuple[AntennaRf, ...] = ()
    """The first InventoryParameterSpec's AntennaConfigurations."""
    impinj_report: tuple[bool, bool] | None = None
    """ImpinjTagReportContentSelector: (peak RSSI, RF phase angle) asked for; None: absent."""

    @property
    def start_trigger(self) -> StartTrigger:
        return self.start.kind

    @property
    def stop_duration_ms(self) -> int | None:
        """ROSpecStopTrigger Duration; None when the ROSpec has no duration."""
        return self.stop.duration_ms if self.stop.kind is RoSpecStop.DURATION else None

    @property
    def antennas(self) -> tuple[int, ...]:
        """Antenna ids of all AISpecs; (0,) means every antenna."""
        ids = tuple(dict.fromkeys(a for spec in self.aispecs for a in spec.antennas))
        return (ALL_ANTENNAS,) if ALL_ANTENNAS in ids else ids

    @property
    def aispec_stop(self) -> AiSpecStop:
        return self.aispecs[0].stop.kind

    @property
    def aispec_duration_ms(self) -> int:
        """The first AISpec's Duration, or its TagObservationTrigger timeout (0: none)."""
        stop = self.aispecs[0].stop
        if stop.observation is not None and stop.kind is AiSpecStop.TAG_OBSERVATION:
            return stop.observation.timeout_ms
        return stop.duration_ms

    @property
    def aispec_tag_count(self) -> int:
        """The first AISpec's TagObservationTrigger NumberOfTags (0: none)."""
        observation = self.aispecs[0].stop.observation
        return observation.n_tags if observation is not None else 0


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


# --- small readers over sllurp's parameter dicts ---------------------------------------------


def _params(body: bytes, what: str) -> dict[str, Any]:
    try:
        decoded, _ = decode_all_parameters(body)
    except (LLRPError, ValueError, KeyError, IndexError, struct.error, TypeError) as err:
        raise _parameter_error(f"{what}: cannot decode parameters: {err}") from err
    return dict(decoded)


def _int(value: object, what: str, low: int = 0, high: int = 0xFFFFFFFF) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _field_error(f"{what} is {value!r}, expected {low}..{high}")
    return value


def _enum_value(value: object, names: Mapping[str, int], what: str) -> int:
    # sllurp decodes some enumerations to names and others to plain numbers.
    if isinstance(value, str):
        try:
            return names[value]
        except KeyError as err:
            raise _field_error(f"{what} {value!r} unknown") from err
    return _int(value, what, 0, 0xFF)


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _parameter_error(f"{what} missing or malformed")
    return value


_REPORT_TRIGGER_NAMES = {
    "None": 0,
    "Upon_N_Tags_Or_End_Of_AISpec": 1,
    "Upon_N_Tags_Or_End_Of_ROSpec": 2,
    "Upon_N_Seconds": 3,
    "Upon_N_Seconds_Or_End_Of_ROSpec": 4,
    "Upon_N_Milliseconds": 5,
    "Upon_N_Milliseconds_Or_End_Of_ROSpec": 6,
}
_KEEPALIVE_NAMES = {"Null": 0, "Immediate": 1}
_SELECTOR_KEYS = (
    "EnableROSpecID",
    "EnableSpecIndex",
    "EnableInventoryParameterSpecID",
    "EnableAntennaID",
    "EnableChannelIndex",
    "EnablePeakRSSI",
    "EnableFirstSeenTimestamp",
    "EnableLastSeenTimestamp",
    "EnableTagSeenCount",
    "EnableAccessSpecID",
)


def _report_spec(value: object) -> ReportSpec:
    spec = _mapping(value, "ROReportSpec")
    trigger_value = _enum_value(spec.get("ROReportTrigger", 0), _REPORT_TRIGGER_NAMES, "trigger")
    try:
        trigger = ReportTrigger(trigger_value)
    except ValueError as err:
        raise _field_error(f"ROReportTrigger {trigger_value} unknown") from err
    n = _int(spec.get("N", 0), "ROReportSpec N", 0, 0xFFFF)
    content = spec.get("TagReportContentSelector")
    if content is None:
        selector = ContentSelector()
    else:
        flags = _mapping(content, "TagReportContentSelector")
        selector = ContentSelector(*(bool(flags.get(key, False)) for key in _SELECTOR_KEYS))
    return ReportSpec(trigger=trigger, n=n, selector=selector)


# --- message parsers ----------------------------------------------------------------------------


def _spec_id(frame: Frame, body: bytes) -> Request:
    if len(body) < 4:
        raise _field_error("spec id missing", field_num=0)
    (spec_id,) = _U32.unpack_from(body)
    return SpecIdRequest(frame.msg_type, frame.msg_id, spec_id)


def _capabilities(frame: Frame, body: bytes) -> Request:
    if len(body) < 1:
        raise _field_error("RequestedData missing")
    try:
        requested = CapabilitySet(body[0])
    except ValueError as err:
        raise _field_error(f"RequestedData {body[0]} unknown") from err
    return CapabilitiesRequest(frame.msg_type, frame.msg_id, requested)


def _reader_config(frame: Frame, body: bytes) -> Request:
    if len(body) < 3:
        raise _field_error("AntennaID/RequestedData missing")
    # LLRP 1.0.1 §16.1.4: AntennaID (u16), RequestedData (u8), GPI/GPO port numbers.
    antenna, requested = struct.unpack_from("!HB", body)
    gpi = gpo = 0
    if len(body) >= 7:
        gpi, gpo = struct.unpack_from("!HH", body, 3)
    return ReaderConfigRequest(frame.msg_type, frame.msg_id, requested, antenna, gpi, gpo)


def _events(spec: object) -> dict[str, bool]:
    states = _mapping(spec, "ReaderEventNotificationSpec").get("EventNotificationState") or []
    if not isinstance(states, list):
        raise _parameter_error("EventNotificationState malformed")
    events: dict[str, bool] = {}
    for state in states:
        entry = _mapping(state, "EventNotificationState")
        events[str(entry.get("EventType"))] = bool(entry.get("NotificationState"))
    return events


def _set_reader_config(frame: Frame, body: bytes) -> Request:
    if len(body) < 1:
        raise _field_error("ResetToFactoryDefaults missing")
    reset = bool(body[0] & 0x80)
    params = _params(body[1:], "SET_READER_CONFIG")
    keepalive_ms: int | None = None
    if "KeepaliveSpec" in params:
        keepalive = _mapping(params["KeepaliveSpec"], "KeepaliveSpec")
        kind = _enum_value(
            keepalive.get("KeepaliveTriggerType", 0), _KEEPALIVE_NAMES, "KeepaliveTriggerType"
        )
        interval = _int(keepalive.get("TimeInterval", 0), "KeepaliveSpec TimeInterval")
        keepalive_ms = interval if kind == 1 else 0
    report = _report_spec(params["ROReportSpec"]) if "ROReportSpec" in params else None
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
                    raise _parameter_error(f"{what} is shorter than 3 bytes")
                port, flags = struct.unpack_from("!HB", value)
                found.append((port, bool(flags & 0x80)))
    except TriggerError as err:
        raise RequestError(err.status) from err
    return tuple(found)


def _optional(parent: Mapping[str, Any], name: str, key: str, high: int) -> int | None:
    value = parent.get(name)
    if value is None:
        return None
    return _int(_mapping(value, name).get(key), f"{name} {key}", 0, high)


def _antenna_rf(rospec: Mapping[str, Any]) -> tuple[AntennaRf, ...]:
    """The AntennaConfigurations of the first AISpec's first InventoryParameterSpec."""
    aispecs = rospec.get("AISpec")
    first = aispecs[0] if isinstance(aispecs, list) and aispecs else aispecs
    specs = first.get("InventoryParameterSpec") if isinstance(first, Mapping) else None
    spec = specs[0] if isinstance(specs, list) and specs else specs
    configs = spec.get("AntennaConfiguration") if isinstance(spec, Mapping) else None
    if isinstance(configs, Mapping):
        configs = [configs]
    found: list[AntennaRf] = []
    for config in configs if isinstance(configs, list) else ():
        config = _mapping(config, "AntennaConfiguration")
        commands = config.get("C1G2InventoryCommand")
        command = commands[0] if isinstance(commands, list) and commands else commands
        command = command if isinstance(command, Mapping) else {}
        singulation = command.get("C1G2SingulationControl")
        singulation = singulation if isinstance(singulation, Mapping) else {}
        session = singulation.get("Session")
        population = singulation.get("TagPopulation")
        found.append(
            AntennaRf(
                antenna=_int(config.get("AntennaID"), "AntennaConfiguration AntennaID", 0, 0xFFFF),
                power_index=_optional(config, "RFTransmitter", "TransmitPower", 0xFFFF),
                sensitivity_index=_optional(config, "RFReceiver", "ReceiverSensitivity", 0xFFFF),
                mode_id=_optional(command, "C1G2RFControl", "ModeIndex", 0xFFFF),
                session=None if session is None else _int(session, "Session", 0, 3),
                tag_population=(
                    None if population is None else _int(population, "TagPopulation", 0, 0xFFFF)
                ),
                search_mode=_optional(
                    command, "ImpinjInventorySearchMode", "InventorySearchMode", 0xFFFF
                ),
            )
        )
    return tuple(found)


def _impinj_report(spec: object) -> tuple[bool, bool] | None:
    if not isinstance(spec, Mapping):
        return None
    selector = spec.get("ImpinjTagReportContentSelector")
    if not isinstance(selector, Mapping):
        return None
    peak = selector.get("ImpinjEnablePeakRSSI")
    phase = selector.get("ImpinjEnableRFPhaseAngle")
    return (
        isinstance(peak, Mapping) and bool(peak.get("PeakRSSIMode")),
        isinstance(phase, Mapping) and bool(phase.get("RFPhaseAngleMode")),
    )


def parse_rospec(param: bytes) -> RoSpec:
    """Read one ROSpec parameter (TLV type 177, whole).

    Triggers are read from the bytes (``llrp_triggers``); the rest with sllurp.

    Raises:
        RequestError: the parameter is not a ROSpec or lacks what inventory needs.
    """
    if len(param) < 4 or (struct.unpack_from("!H", param)[0] & 0x3FF) != ParamType.ROSPEC:
        raise _parameter_error("ADD_ROSPEC does not start with a ROSpec parameter")
    try:
        triggers = parse_triggers(param)
    except TriggerError as err:
        raise RequestError(err.status) from err
    decoded = _params(param, "ROSpec")
    rospec = _mapping(decoded.get("ROSpec"), "ROSpec")
    rospec_id = _int(rospec.get("ROSpecID"), "ROSpecID")
    priority = _int(rospec.get("Priority", 0), "Priority", 0, 7)
    state_value = _int(rospec.get("CurrentState", 0), "CurrentState", 0, 2)
    report = _report_spec(rospec["ROReportSpec"]) if "ROReportSpec" in rospec else None
    return RoSpec(
        rospec_id=rospec_id,
        priority=priority,
        current_state=RoSpecState(state_value),
        start=triggers.start,
        stop=triggers.stop,
        aispecs=triggers.aispecs,
        inventory_parameter_spec_id=triggers.aispecs[0].inventory_parameter_spec_id,
        report=report,
        raw=param,
        antenna_rf=_antenna_rf(rospec),
        impinj_report=_impinj_report(rospec.get("ROReportSpec")),
    )


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
        raise _field_error("AccessSpecID 0 is reserved", field_num=0)
    return AddAccessSpec(frame.msg_type, frame.msg_id, spec_id, body[:length])


def _custom(frame: Frame, body: bytes) -> Request:
    if len(body) < 5:
        raise _field_error("custom message without vendor id and subtype")
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
