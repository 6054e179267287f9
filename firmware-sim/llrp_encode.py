"""Reader→client LLRP 1.0.1 messages, encoded without sllurp (which cannot encode them).

Sans-I/O: functions take typed values and return the bytes of one whole message,
header included. Nothing here holds a socket, a clock or state, except ``ReportEncoder``,
which precomputes the layout of a TagReportData for one content selector so that the
report hot path is a single ``struct.pack`` per tag (EPC-96) or three (other EPCs).

Layouts follow LLRP 1.0.1 (message types §16, parameters §16.2); parameter order is the
order the standard lists. Every message built here decodes with sllurp 3.0.5 to the
values put in (the tests check that, message by message).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Final, NamedTuple

from firmware_sim.errors import EncodeError
from firmware_sim.profile import ReaderProfile

VERSION: Final = 1
MAX_PARAM_LEN: Final = 0xFFFF
MAX_DESCRIPTION: Final = 200
"""Longest ErrorDescription put into an LLRPStatus (bytes, UTF-8)."""
MAX_MSG_ID: Final = 0xFFFFFFFF
EPC_CACHE_SIZE: Final = 65_536

_MSG_HEADER = struct.Struct("!HII")
_TLV = struct.Struct("!HH")
_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_IMPINJ_PARAM = struct.Struct("!HHIIh")
"""A 2-byte Impinj custom parameter: TLV 1023, length 14, vendor, subtype, value."""
_U32 = struct.Struct("!I")
_U16U16 = struct.Struct("!HH")


class MsgType(IntEnum):
    """LLRP 1.0.1 message types used by a reader and its client."""

    GET_READER_CAPABILITIES = 1
    GET_READER_CONFIG = 2
    SET_READER_CONFIG = 3
    CLOSE_CONNECTION_RESPONSE = 4
    GET_READER_CAPABILITIES_RESPONSE = 11
    GET_READER_CONFIG_RESPONSE = 12
    SET_READER_CONFIG_RESPONSE = 13
    CLOSE_CONNECTION = 14
    ADD_ROSPEC = 20
    DELETE_ROSPEC = 21
    START_ROSPEC = 22
    STOP_ROSPEC = 23
    ENABLE_ROSPEC = 24
    DISABLE_ROSPEC = 25
    GET_ROSPECS = 26
    ADD_ROSPEC_RESPONSE = 30
    DELETE_ROSPEC_RESPONSE = 31
    START_ROSPEC_RESPONSE = 32
    STOP_ROSPEC_RESPONSE = 33
    ENABLE_ROSPEC_RESPONSE = 34
    DISABLE_ROSPEC_RESPONSE = 35
    GET_ROSPECS_RESPONSE = 36
    ADD_ACCESSSPEC = 40
    DELETE_ACCESSSPEC = 41
    ENABLE_ACCESSSPEC = 42
    DISABLE_ACCESSSPEC = 43
    GET_ACCESSSPECS = 44
    ADD_ACCESSSPEC_RESPONSE = 50
    DELETE_ACCESSSPEC_RESPONSE = 51
    ENABLE_ACCESSSPEC_RESPONSE = 52
    DISABLE_ACCESSSPEC_RESPONSE = 53
    GET_ACCESSSPECS_RESPONSE = 54
    GET_REPORT = 60
    RO_ACCESS_REPORT = 61
    KEEPALIVE = 62
    READER_EVENT_NOTIFICATION = 63
    ENABLE_EVENTS_AND_REPORTS = 64
    KEEPALIVE_ACK = 72
    ERROR_MESSAGE = 100
    CUSTOM_MESSAGE = 1023


RESPONSE_TYPES: Final[Mapping[int, int]] = MappingProxyType(
    {
        MsgType.GET_READER_CAPABILITIES: MsgType.GET_READER_CAPABILITIES_RESPONSE,
        MsgType.GET_READER_CONFIG: MsgType.GET_READER_CONFIG_RESPONSE,
        MsgType.SET_READER_CONFIG: MsgType.SET_READER_CONFIG_RESPONSE,
        MsgType.CLOSE_CONNECTION: MsgType.CLOSE_CONNECTION_RESPONSE,
        MsgType.ADD_ROSPEC: MsgType.ADD_ROSPEC_RESPONSE,
        MsgType.DELETE_ROSPEC: MsgType.DELETE_ROSPEC_RESPONSE,
        MsgType.START_ROSPEC: MsgType.START_ROSPEC_RESPONSE,
        MsgType.STOP_ROSPEC: MsgType.STOP_ROSPEC_RESPONSE,
        MsgType.ENABLE_ROSPEC: MsgType.ENABLE_ROSPEC_RESPONSE,
        MsgType.DISABLE_ROSPEC: MsgType.DISABLE_ROSPEC_RESPONSE,
        MsgType.GET_ROSPECS: MsgType.GET_ROSPECS_RESPONSE,
        MsgType.ADD_ACCESSSPEC: MsgType.ADD_ACCESSSPEC_RESPONSE,
        MsgType.DELETE_ACCESSSPEC: MsgType.DELETE_ACCESSSPEC_RESPONSE,
        MsgType.ENABLE_ACCESSSPEC: MsgType.ENABLE_ACCESSSPEC_RESPONSE,
        MsgType.DISABLE_ACCESSSPEC: MsgType.DISABLE_ACCESSSPEC_RESPONSE,
        MsgType.GET_ACCESSSPECS: MsgType.GET_ACCESSSPECS_RESPONSE,
    }
)
"""Request type → response type: the pairs a reader answers (one response each)."""


class ParamType(IntEnum):
    """TLV parameter types written here (LLRP 1.0.1 §16.2)."""

    UTC_TIMESTAMP = 128
    GENERAL_DEVICE_CAPABILITIES = 137
    RECEIVE_SENSITIVITY_TABLE_ENTRY = 139
    PER_ANTENNA_AIR_PROTOCOL = 140
    GPIO_CAPABILITIES = 141
    LLRP_CAPABILITIES = 142
    REGULATORY_CAPABILITIES = 143
    UHF_BAND_CAPABILITIES = 144
    TRANSMIT_POWER_LEVEL_TABLE_ENTRY = 145
    FREQUENCY_INFORMATION = 146
    FREQUENCY_HOP_TABLE = 147
    ROSPEC = 177
    LLRP_CONFIGURATION_STATE_VALUE = 217
    IDENTIFICATION = 218
    GPO_WRITE_DATA = 219
    KEEPALIVE_SPEC = 220
    ANTENNA_PROPERTIES = 221
    GPI_PORT_CURRENT_STATE = 225
    RO_REPORT_SPEC = 237
    TAG_REPORT_CONTENT_SELECTOR = 238
    TAG_REPORT_DATA = 240
    EPC_DATA = 241
    READER_EVENT_NOTIFICATION_DATA = 246
    GPI_EVENT = 248
    ROSPEC_EVENT = 249
    AISPEC_EVENT = 254
    ANTENNA_EVENT = 255
    CONNECTION_ATTEMPT_EVENT = 256
    CONNECTION_CLOSE_EVENT = 257
    LLRP_STATUS = 287
    FIELD_ERROR = 288
    C1G2_LLRP_CAPABILITIES = 327
    UHF_C1G2_RF_MODE_TABLE = 328
    UHF_C1G2_RF_MODE_TABLE_ENTRY = 329
    C1G2_EPC_MEMORY_SELECTOR = 348


class TvType(IntEnum):
    """TV-encoded parameters in a TagReportData (type, fixed-size value)."""

    ANTENNA_ID = 1
    FIRST_SEEN_UTC = 2
    LAST_SEEN_UTC = 4
    PEAK_RSSI = 6
    CHANNEL_INDEX = 7
    TAG_SEEN_COUNT = 8
    ROSPEC_ID = 9
    INVENTORY_PARAMETER_SPEC_ID = 10
    EPC_96 = 13
    SPEC_INDEX = 14
    ACCESS_SPEC_ID = 16


class StatusCode(IntEnum):
    """LLRPStatus codes (LLRP 1.0.1 §14.1.1)."""

    SUCCESS = 0
    PARAMETER_ERROR = 100
    FIELD_ERROR = 101
    UNEXPECTED_PARAMETER = 102
    MISSING_PARAMETER = 103
    DUPLICATE_PARAMETER = 104
    OVERFLOW_PARAMETER = 105
    OVERFLOW_FIELD = 106
    UNKNOWN_PARAMETER = 107
    UNKNOWN_FIELD = 108
    UNSUPPORTED_MESSAGE = 109
    UNSUPPORTED_VERSION = 110
    UNSUPPORTED_PARAMETER = 111
    A_INVALID = 300
    A_OUT_OF_RANGE = 301
    DEVICE_ERROR = 401


class ConnectionAttempt(IntEnum):
    """ConnectionAttemptEvent status (LLRP 1.0.1 §16.2.7.6.10)."""

    SUCCESS = 0
    READER_INITIATED_EXISTS = 1
    CLIENT_INITIATED_EXISTS = 2
    OTHER_FAILURE = 3
    ANOTHER_ATTEMPTED = 4


class ReportTrigger(IntEnum):
    """ROReportTrigger (LLRP 1.0.1 §16.2.7.1)."""

    NONE = 0
    N_TAGS_OR_END_OF_AISPEC = 1
    N_TAGS_OR_END_OF_ROSPEC = 2
    N_SECONDS = 3
    N_SECONDS_OR_END_OF_ROSPEC = 4
    N_MILLISECONDS = 5
    N_MILLISECONDS_OR_END_OF_ROSPEC = 6


IMPINJ_VENDOR_ID: Final = 25882
IMPINJ_ENABLE_EXTENSIONS: Final = 21
IMPINJ_ENABLE_EXTENSIONS_RESPONSE: Final = 22
IMPINJ_RF_PHASE_ANGLE: Final = 56
IMPINJ_PEAK_RSSI: Final = 57
_IMPINJ_HEAD: Final = (1023, 14, IMPINJ_VENDOR_ID)


@dataclass(frozen=True, slots=True)
class Status:
    """An LLRPStatus: a code, a description and, for field errors, which field."""

    code: StatusCode = StatusCode.SUCCESS
    description: str = ""
    field_num: int | None = None
    field_error: StatusCode = StatusCode.A_INVALID

    @property
    def ok(self) -> bool:
        return self.code is StatusCode.SUCCESS


SUCCESS: Final = Status()


@dataclass(frozen=True, slots=True)
class ContentSelector:
    """TagReportContentSelector: which optional fields each TagReportData carries."""

    rospec_id: bool = False
    spec_index: bool = False
    inventory_parameter_spec_id: bool = False
    antenna_id: bool = True
    channel_index: bool = False
    peak_rssi: bool = True
    first_seen: bool = True
    last_seen: bool = True
    tag_seen_count: bool = True
    access_spec_id: bool = False

    def flags(self) -> int:
        """The 16-bit flag word, most significant bit first in LLRP's field order."""
        bits = (
            self.rospec_id,
            self.spec_index,
            self.inventory_parameter_spec_id,
            self.antenna_id,
            self.channel_index,
            self.peak_rssi,
            self.first_seen,
            self.last_seen,
            self.tag_seen_count,
            self.access_spec_id,
        )
        value = 0
        for position, bit in zip(range(15, 5, -1), bits, strict=True):
            if bit:
                value |= 1 << position
        return value

    @classmethod
    def from_flags(cls, value: int) -> ContentSelector:
        """The selector a 16-bit flag word stands for (low 6 bits are reserved)."""

        def bit(position: int) -> bool:
            return bool(value >> position & 1)

        return cls(*(bit(p) for p in range(15, 5, -1)))


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """ROReportSpec: when to report and what each tag entry carries."""

    trigger: ReportTrigger = ReportTrigger.N_TAGS_OR_END_OF_AISPEC
    n: int = 0
    selector: ContentSelector = ContentSelector()


class TagReportEntry(NamedTuple):
    """One TagReportData: a tag seen on one antenna during one report window."""

    epc_hex: str
    antenna: int
    peak_rssi: int
    first_seen_us: int
    last_seen_us: int
    seen_count: int
    channel_index: int = 1


# --- building blocks ---------------------------------------------------------------------


def message(msg_type: int, msg_id: int, body: bytes = b"") -> bytes:
    """One LLRP message: the 10-byte header (version 1) and ``body``."""
    return _MSG_HEADER.pack((VERSION << 10) | msg_type, 10 + len(body), msg_id & MAX_MSG_ID) + body


def custom_message(vendor_id: int, subtype: int, msg_id: int, body: bytes = b"") -> bytes:
    """A CUSTOM_MESSAGE (type 1023): vendor id and subtype lead the body."""
    return message(MsgType.CUSTOM_MESSAGE, msg_id, struct.pack("!IB", vendor_id, subtype) + body)


def tlv(param_type: int, body: bytes = b"") -> bytes:
    """One TLV parameter.

    Raises:
        EncodeError: the parameter would be longer than a TLV length can say.
    """
    length = 4 + len(body)
    if length > MAX_PARAM_LEN:
        raise EncodeError(f"parameter {param_type} would be {length} bytes (max {MAX_PARAM_LEN})")
    return _TLV.pack(param_type, length) + body


def llrp_status(status: Status = SUCCESS) -> bytes:
    """The LLRPStatus parameter, with a FieldError when ``status.field_num`` is set."""
    description = status.description.encode("utf-8")[:MAX_DESCRIPTION]
    body = _U16U16.pack(status.code, len(description)) + description
    if status.field_num is not None:
        body += tlv(ParamType.FIELD_ERROR, _U16U16.pack(status.field_num, status.field_error))
    return tlv(ParamType.LLRP_STATUS, body)


def _utc_timestamp(utc_us: int) -> bytes:
    return tlv(ParamType.UTC_TIMESTAMP, struct.pack("!Q", utc_us))


def _checked(value: int, low: int, high: int, what: str) -> int:
    if not low <= value <= high:
        raise EncodeError(f"{what} {value} outside {low}..{high}")
    return value


# --- reader events, keepalive, errors ------------------------------------------------------


def _reader_event(msg_id: int, utc_us: int, event: bytes) -> bytes:
    data = tlv(ParamType.READER_EVENT_NOTIFICATION_DATA, _utc_timestamp(utc_us) + event)
    return message(MsgType.READER_EVENT_NOTIFICATION, msg_id, data)


def encode_connection_attempt(
    msg_id: int, utc_us: int, status: ConnectionAttempt = ConnectionAttempt.SUCCESS
) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and ConnectionAttemptEvent."""
    return _reader_event(msg_id, utc_us, tlv(ParamType.CONNECTION_ATTEMPT_EVENT, _U16.pack(status)))


def encode_antenna_event(msg_id: int, utc_us: int, antenna: int, connected: bool) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and AntennaEvent."""
    _checked(antenna, 1, 0xFFFF, "antenna id")
    body = struct.pack("!BH", 1 if connected else 0, antenna)
    return _reader_event(msg_id, utc_us, tlv(ParamType.ANTENNA_EVENT, body))


class RoSpecEventType(IntEnum):
    """ROSpecEvent EventType (LLRP 1.0.1 §16.2.7.6.3)."""

    START = 0
    END = 1
    PREEMPTION = 2


def encode_rospec_event(
    msg_id: int, utc_us: int, event: RoSpecEventType, rospec_id: int, preempting_id: int = 0
) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and ROSpecEvent."""
    body = struct.pack("!BII", event, rospec_id, preempting_id)
    return _reader_event(msg_id, utc_us, tlv(ParamType.ROSPEC_EVENT, body))


def encode_aispec_event(msg_id: int, utc_us: int, rospec_id: int, spec_index: int) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and AISpecEvent End_of_AISpec."""
    _checked(spec_index, 1, 0xFFFF, "spec index")
    body = struct.pack("!BIH", 0, rospec_id, spec_index)
    return _reader_event(msg_id, utc_us, tlv(ParamType.AISPEC_EVENT, body))


def encode_gpi_event(msg_id: int, utc_us: int, port: int, high: bool) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and GPIEvent (the port's new level)."""
    _checked(port, 1, 0xFFFF, "GPI port")
    body = struct.pack("!HB", port, 0x80 if high else 0)
    return _reader_event(msg_id, utc_us, tlv(ParamType.GPI_EVENT, body))


def encode_connection_close(msg_id: int, utc_us: int) -> bytes:
    """READER_EVENT_NOTIFICATION with ConnectionCloseEvent: the reader is hanging up."""
    return _reader_event(msg_id, utc_us, tlv(ParamType.CONNECTION_CLOSE_EVENT))


def encode_keepalive(msg_id: int) -> bytes:
    """KEEPALIVE (no body)."""
    return message(MsgType.KEEPALIVE, msg_id)


def encode_error_message(msg_id: int, status: Status) -> bytes:
    """ERROR_MESSAGE: the answer to a message the reader cannot take at all."""
    return message(MsgType.ERROR_MESSAGE, msg_id, llrp_status(status))


# --- responses ----------------------------------------------------------------------------


def encode_response(
    request_type: int, msg_id: int, status: Status = SUCCESS, extra: bytes = b""
) -> bytes:
    """The response to ``request_type``: LLRPStatus, then ``extra`` parameters.

    Raises:
        EncodeError: ``request_type`` is not a request that has a response.
    """
    try:
        response_type = RESPONSE_TYPES[request_type]
    except KeyError as err:
        raise EncodeError(f"message type {request_type} has no response") from err
    return message(response_type, msg_id, llrp_status(status) + extra)


def encode_custom_response(vendor_id: int, subtype: int, msg_id: int, status: Status) -> bytes:
    """A custom response carrying only an LLRPStatus (e.g. Impinj enable-extensions)."""
    return custom_message(vendor_id, subtype, msg_id, llrp_status(status))


class CapabilitySet(IntEnum):
    """GET_READER_CAPABILITIES RequestedData."""

    ALL = 0
    GENERAL = 1
    LLRP = 2
    REGULATORY = 3
    AIR_PROTOCOL = 4


def _general_device_capabilities(profile: ReaderProfile, antennas: int) -> bytes:
    firmware = profile.firmware.encode("ascii")
    has_utc_clock = 1 << 14
    body = struct.pack(
        "!HHIIH", antennas, has_utc_clock, profile.manufacturer, profile.model, len(firmware)
    )
    parts = [body, firmware]
    for index, value in enumerate(profile.receive_sensitivity_db, start=1):
        parts.append(tlv(ParamType.RECEIVE_SENSITIVITY_TABLE_ENTRY, _U16U16.pack(index, value)))
    parts.append(tlv(ParamType.GPIO_CAPABILITIES, _U16U16.pack(profile.gpis, profile.gpos)))
    epc_class1_gen2 = 1
    for antenna in range(1, antennas + 1):
        body = struct.pack("!HHB", antenna, 1, epc_class1_gen2)
        parts.append(tlv(ParamType.PER_ANTENNA_AIR_PROTOCOL, body))
    return tlv(ParamType.GENERAL_DEVICE_CAPABILITIES, b"".join(parts))


def _llrp_capabilities(profile: ReaderProfile) -> bytes:
    can_report_buffer_fill_warning = 1 << 6
    supports_event_and_report_holding = 1 << 3
    body = struct.pack(
        "!BBHIIIII",
        can_report_buffer_fill_warning | supports_event_and_report_holding,
        1,  # MaxPriorityLevelSupported
        0,  # ClientRequestOpSpecTimeout
        profile.max_rospecs,
        profile.max_specs_per_rospec,
        1,  # MaxNumInventoryParameterSpecsPerAISpec
        profile.max_access_specs,
        profile.max_opspecs_per_access_spec,
    )
    return tlv(ParamType.LLRP_CAPABILITIES, body)


_RF_MODE = struct.Struct("!IBBBBIIIII")


def _rf_mode_table(profile: ReaderProfile) -> bytes:
    entries = []
    for mode in profile.rf_modes:
        rc = (0x80 if mode.dr_64_3 else 0) | (0x40 if mode.epc_hag_tc_conformance else 0)
        body = _RF_MODE.pack(
            mode.mode_id,
            rc,
            mode.modulation,
            mode.forward_link_modulation,
            mode.spectral_mask,
            mode.bdr_bps,
            mode.pie,
            mode.min_tari_ns,
            mode.max_tari_ns,
            mode.step_tari_ns,
        )
        entries.append(tlv(ParamType.UHF_C1G2_RF_MODE_TABLE_ENTRY, body))
    return tlv(ParamType.UHF_C1G2_RF_MODE_TABLE, b"".join(entries))


def _regulatory_capabilities(profile: ReaderProfile, rf_mode_table: bool = True) -> bytes:
    powers = [
        tlv(ParamType.TRANSMIT_POWER_LEVEL_TABLE_ENTRY, _U16U16.pack(index, value))
        for index, value in enumerate(profile.tx_power_centi_dbm, start=1)
    ]
    hops = profile.hop_table_khz
    hop_table = struct.pack("!BBH", 1, 0, len(hops)) + struct.pack(f"!{len(hops)}I", *hops)
    hopping = 0x80
    frequency_information = tlv(
        ParamType.FREQUENCY_INFORMATION,
        _U8.pack(hopping) + tlv(ParamType.FREQUENCY_HOP_TABLE, hop_table),
    )
    band = tlv(
        ParamType.UHF_BAND_CAPABILITIES,
        b"".join(powers)
        + frequency_information
        + (_rf_mode_table(profile) if rf_mode_table else b""),
    )
    head = _U16U16.pack(profile.country_code, profile.communications_standard)
    return tlv(ParamType.REGULATORY_CAPABILITIES, head + band)


def _c1g2_llrp_capabilities(profile: ReaderProfile) -> bytes:
    can_support_block_write = 0x40
    body = struct.pack("!BH", can_support_block_write, profile.max_select_filters)
    return tlv(ParamType.C1G2_LLRP_CAPABILITIES, body)


def encode_capabilities_response(
    msg_id: int,
    profile: ReaderProfile,
    antennas: int,
    requested: CapabilitySet = CapabilitySet.ALL,
    *,
    rf_mode_table: bool = True,
) -> bytes:
    """GET_READER_CAPABILITIES_RESPONSE shaped like an Impinj R420's.

    Args:
        msg_id: the request's message id.
        profile: identity and tables to report.
        antennas: MaxNumberOfAntennaSupported (1..8 for a simulator).
        requested: which capability sets the client asked for.
        rf_mode_table: False leaves the UHFC1G2RFModeTable out (a fault some readers
            show, and one that kills sllurp's client).
    """
    _checked(antennas, 1, 0xFFFF, "antenna count")
    everything = requested is CapabilitySet.ALL
    parts = [llrp_status(SUCCESS)]
    if everything or requested is CapabilitySet.GENERAL:
        parts.append(_general_device_capabilities(profile, antennas))
    if everything or requested is CapabilitySet.LLRP:
        parts.append(_llrp_capabilities(profile))
    if everything or requested is CapabilitySet.REGULATORY:
        parts.append(_regulatory_capabilities(profile, rf_mode_table))
    if everything or requested is CapabilitySet.AIR_PROTOCOL:
        parts.append(_c1g2_llrp_capabilities(profile))
    return message(MsgType.GET_READER_CAPABILITIES_RESPONSE, msg_id, b"".join(parts))


def report_spec_param(spec: ReportSpec) -> bytes:
    """The ROReportSpec parameter (with its TagReportContentSelector)."""
    memory_selector = tlv(ParamType.C1G2_EPC_MEMORY_SELECTOR, _U8.pack(0))
    selector = tlv(
        ParamType.TAG_REPORT_CONTENT_SELECTOR, _U16.pack(spec.selector.flags()) + memory_selector
    )
    head = struct.pack("!BH", spec.trigger, _checked(spec.n, 0, 0xFFFF, "ROReportSpec N"))
    return tlv(ParamType.RO_REPORT_SPEC, head + selector)


@dataclass(frozen=True, slots=True)
class AntennaState:
    """One antenna port as GET_READER_CONFIG reports it."""

    antenna: int
    connected: bool
    gain_centi_dbi: int = 0


class ConfigSet(IntEnum):
    """GET_READER_CONFIG RequestedData (the parts the simulator reports)."""

    ALL = 0
    IDENTIFICATION = 1
    ANTENNA_PROPERTIES = 2
    RO_REPORT_SPEC = 4
    LLRP_CONFIGURATION_STATE_VALUE = 7
    KEEPALIVE_SPEC = 8
    GPI_PORT_CURRENT_STATE = 9
    GPO_WRITE_DATA = 10


def encode_reader_config_response(
    msg_id: int,
    *,
    reader_mac: bytes,
    antennas: Sequence[AntennaState],
    report_spec: ReportSpec,
    keepalive_ms: int,
    requested: int = ConfigSet.ALL,
    gpis: Sequence[tuple[int, bool]] = (),
    gpos: Sequence[tuple[int, bool]] = (),
) -> bytes:
    """GET_READER_CONFIG_RESPONSE: identification, antennas, report spec, keepalive.

    Args:
        msg_id: the request's message id.
        reader_mac: the reader's 6-byte MAC address (Identification, IDType MAC).
        antennas: the antenna ports to list (all, or the one asked for).
        report_spec: the reader-level default ROReportSpec.
        keepalive_ms: KEEPALIVE period; 0 means keepalives are off.
        requested: RequestedData; 0 is everything, other values pick one part (parts
            the simulator does not model come back absent, with status Success).
        gpis: (port, level) of the GPI ports to report (GPIPortCurrentState).
        gpos: (port, level) of the GPO ports to report (GPOWriteData).
    """

    def wanted(part: ConfigSet) -> bool:
        return requested in (ConfigSet.ALL, part)

    parts = [llrp_status(SUCCESS)]
    if wanted(ConfigSet.IDENTIFICATION):
        body = struct.pack("!BH", 0, len(reader_mac)) + reader_mac
        parts.append(tlv(ParamType.IDENTIFICATION, body))
    if wanted(ConfigSet.ANTENNA_PROPERTIES):
        for state in antennas:
            connected = 0x80 if state.connected else 0
            body = struct.pack("!BHh", connected, state.antenna, state.gain_centi_dbi)
            parts.append(tlv(ParamType.ANTENNA_PROPERTIES, body))
    if wanted(ConfigSet.RO_REPORT_SPEC):
        parts.append(report_spec_param(report_spec))
    if wanted(ConfigSet.LLRP_CONFIGURATION_STATE_VALUE):
        parts.append(tlv(ParamType.LLRP_CONFIGURATION_STATE_VALUE, _U32.pack(0)))
    if wanted(ConfigSet.KEEPALIVE_SPEC):
        periodic = 1 if keepalive_ms > 0 else 0
        interval = _checked(keepalive_ms, 0, MAX_MSG_ID, "keepalive ms")
        parts.append(tlv(ParamType.KEEPALIVE_SPEC, struct.pack("!BI", periodic, interval)))
    if wanted(ConfigSet.GPI_PORT_CURRENT_STATE):
        for port, high in gpis:
            body = struct.pack("!HBB", port, 0x80, 1 if high else 0)  # enabled; 0 low, 1 high
            parts.append(tlv(ParamType.GPI_PORT_CURRENT_STATE, body))
    if wanted(ConfigSet.GPO_WRITE_DATA):
        for port, high in gpos:
            body = struct.pack("!HB", port, 0x80 if high else 0)
            parts.append(tlv(ParamType.GPO_WRITE_DATA, body))
    return message(MsgType.GET_READER_CONFIG_RESPONSE, msg_id, b"".join(parts))


def encode_get_rospecs_response(msg_id: int, rospecs: Iterable[bytes]) -> bytes:
    """GET_ROSPECS_RESPONSE: LLRPStatus and each ROSpec parameter as stored."""
    return message(MsgType.GET_ROSPECS_RESPONSE, msg_id, llrp_status(SUCCESS) + b"".join(rospecs))


# --- tag reports (the hot path) -------------------------------------------------------------


@lru_cache(maxsize=EPC_CACHE_SIZE)
def epc_bytes(epc_hex: str) -> bytes:
    """The EPC bank bytes of a hex EPC (cached: a tag is reported many times).

    Raises:
        EncodeError: not an even number of hex digits, empty, or longer than 496 bits.
    """
    if not epc_hex or len(epc_hex) % 4 or len(epc_hex) > 124:
        raise EncodeError(f"EPC must be 4..124 hex digits in whole words, got {epc_hex[:40]!r}")
    try:
        return bytes.fromhex(epc_hex)
    except ValueError as err:
        raise EncodeError(f"EPC is not hex: {epc_hex[:40]!r}") from err


class ReportEncoder:
    """RO_ACCESS_REPORT encoding for one ROSpec and content selector.

    The selected optional fields are fixed for the life of a ROSpec, so their layout is
    computed once; each TagReportData is then one ``struct.pack`` (EPC-96) or three
    (EPCData). TV fields follow LLRP 1.0.1 §16.2.7.3: EPC, ROSpecID, SpecIndex,
    InventoryParameterSpecID, AntennaID, PeakRSSI, ChannelIndex, FirstSeenTimestampUTC,
    LastSeenTimestampUTC, TagSeenCount, AccessSpecID. With Impinj extensions asked for,
    custom parameters follow: ImpinjPeakRSSI (centi-dBm; the model's RSSI is whole dB)
    and ImpinjRFPhaseAngle (0..4095). The field model has no phase: the angle reported
    is a hash of tag, antenna and time, shaped right but carrying no information.
    """

    def __init__(
        self,
        selector: ContentSelector,
        *,
        rospec_id: int = 0,
        spec_index: int = 1,
        inventory_parameter_spec_id: int = 1,
        impinj_peak_rssi: bool = False,
        impinj_phase: bool = False,
    ) -> None:
        self.selector = selector
        self._impinj_peak = impinj_peak_rssi
        self._impinj_phase = impinj_phase
        self._custom_len = _IMPINJ_PARAM.size * (impinj_peak_rssi + impinj_phase)
        # Each optional field: (TV type, struct code, entry attribute or constant).
        fields: list[tuple[TvType, str, str | int]] = []
        if selector.rospec_id:
            fields.append((TvType.ROSPEC_ID, "I", rospec_id))
        if selector.spec_index:
            fields.append((TvType.SPEC_INDEX, "H", spec_index))
        if selector.inventory_parameter_spec_id:
            fields.append((TvType.INVENTORY_PARAMETER_SPEC_ID, "H", inventory_parameter_spec_id))
        if selector.antenna_id:
            fields.append((TvType.ANTENNA_ID, "H", "antenna"))
        if selector.peak_rssi:
            fields.append((TvType.PEAK_RSSI, "b", "peak_rssi"))
        if selector.channel_index:
            fields.append((TvType.CHANNEL_INDEX, "H", "channel_index"))
        if selector.first_seen:
            fields.append((TvType.FIRST_SEEN_UTC, "Q", "first_seen_us"))
        if selector.last_seen:
            fields.append((TvType.LAST_SEEN_UTC, "Q", "last_seen_us"))
        if selector.tag_seen_count:
            fields.append((TvType.TAG_SEEN_COUNT, "H", "seen_count"))
        if selector.access_spec_id:
            fields.append((TvType.ACCESS_SPEC_ID, "I", 0))
        tail_format = "!" + "".join("B" + code for _, code, _ in fields)
        self._tail = struct.Struct(tail_format)
        # Per field: its TV type byte, and either the entry index to read or a constant.
        self._plan: tuple[tuple[int, int, int], ...] = tuple(
            (
                0x80 | tv,
                TagReportEntry._fields.index(src) if isinstance(src, str) else -1,
                src if isinstance(src, int) else 0,
            )
            for tv, _, src in fields
        )
        self._epc96 = struct.Struct("!HHB12s" + tail_format[1:])
        self._epc96_len = self._epc96.size

    def _values(self, entry: TagReportEntry) -> list[object]:
        values: list[object] = []
        append = values.append
        for tv, index, constant in self._plan:
            append(tv)
            append(entry[index] if index >= 0 else constant)
        return values

    def tag_report_data(self, entry: TagReportEntry) -> bytes:
        """One TagReportData parameter.

        Raises:
            EncodeError: the EPC is not hex or the antenna/count is out of range.
        """
        if not 1 <= entry.antenna <= 0xFFFF:
            raise EncodeError(f"antenna id {entry.antenna} outside 1..65535")
        # Counts saturate and RSSI clamps to the field's range, as readers do.
        if entry.seen_count > 0xFFFF or not -128 <= entry.peak_rssi <= 127:
            entry = entry._replace(
                seen_count=min(entry.seen_count, 0xFFFF),
                peak_rssi=max(-128, min(127, entry.peak_rssi)),
            )
        epc = epc_bytes(entry.epc_hex)
        values = self._values(entry)
        custom = self._custom(entry) if self._custom_len else b""
        if len(epc) == 12:
            return (
                self._epc96.pack(
                    ParamType.TAG_REPORT_DATA,
                    self._epc96_len + len(custom),
                    0x80 | TvType.EPC_96,
                    epc,
                    *values,
                )
                + custom
            )
        epc_param = tlv(ParamType.EPC_DATA, _U16.pack(len(epc) * 8) + epc)
        tail = self._tail.pack(*values)
        length = 4 + len(epc_param) + len(tail) + len(custom)
        return _TLV.pack(ParamType.TAG_REPORT_DATA, length) + epc_param + tail + custom

    def _custom(self, entry: TagReportEntry) -> bytes:
        """The Impinj custom parameters of one TagReportData."""
        parts = []
        if self._impinj_phase:
            key = f"{entry.epc_hex}:{entry.antenna}:{entry.last_seen_us}".encode()
            angle = zlib.crc32(key) % 4096
            parts.append(_IMPINJ_PARAM.pack(*_IMPINJ_HEAD, IMPINJ_RF_PHASE_ANGLE, angle))
        if self._impinj_peak:
            parts.append(_IMPINJ_PARAM.pack(*_IMPINJ_HEAD, IMPINJ_PEAK_RSSI, entry.peak_rssi * 100))
        return b"".join(parts)

    def encode(self, msg_id: int, entries: Iterable[TagReportEntry]) -> bytes:
        """An RO_ACCESS_REPORT holding one TagReportData per entry."""
        body = b"".join([self.tag_report_data(entry) for entry in entries])
        return message(MsgType.RO_ACCESS_REPORT, msg_id, body)
