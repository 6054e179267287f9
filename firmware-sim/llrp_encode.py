"""Reader→client LLRP 1.0.1 messages, encoded without sllurp (which cannot encode them).

Sans-I/O: functions take typed values and return the bytes of one whole message,
header included; nothing here holds a socket, a clock or state. Reader events are built
from their event parameters (``antenna_event``, ``gpi_event``, ...) wrapped by
``encode_reader_event``, so one notification may carry several. Tag reports, the hot
path, are ``report_encoder``'s.

Layouts follow LLRP 1.0.1 (message types §16, parameters §16.2); parameter order is the
order the standard lists. Every message built here decodes with sllurp 3.0.5 to the
values put in (the tests check that, message by message).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Final

from firmware_sim.errors import EncodeError
from firmware_sim.llrp_types import (
    RESPONSE_TYPES,
    SUCCESS,
    AntennaState,
    CapabilitySet,
    ConfigSet,
    ConnectionAttempt,
    MsgType,
    ParamType,
    ReportSpec,
    RoSpecEventType,
    Status,
)
from firmware_sim.profile import ReaderProfile

VERSION: Final = 1
MAX_PARAM_LEN: Final = 0xFFFF
MAX_DESCRIPTION: Final = 200
"""Longest ErrorDescription put into an LLRPStatus (bytes, UTF-8)."""
MAX_MSG_ID: Final = 0xFFFFFFFF

_MSG_HEADER = struct.Struct("!HII")
_TLV = struct.Struct("!HH")
_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U16U16 = struct.Struct("!HH")


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


def encode_reader_event(msg_id: int, utc_us: int, *events: bytes) -> bytes:
    """READER_EVENT_NOTIFICATION: a UTCTimestamp and the given event parameters."""
    data = tlv(ParamType.READER_EVENT_NOTIFICATION_DATA, _utc_timestamp(utc_us) + b"".join(events))
    return message(MsgType.READER_EVENT_NOTIFICATION, msg_id, data)


def connection_attempt_event(status: ConnectionAttempt = ConnectionAttempt.SUCCESS) -> bytes:
    """ConnectionAttemptEvent: whether the reader takes this connection."""
    return tlv(ParamType.CONNECTION_ATTEMPT_EVENT, _U16.pack(status))


def antenna_event(antenna: int, connected: bool) -> bytes:
    """AntennaEvent: an antenna port was plugged in or unplugged."""
    _checked(antenna, 1, 0xFFFF, "antenna id")
    return tlv(ParamType.ANTENNA_EVENT, struct.pack("!BH", 1 if connected else 0, antenna))


def rospec_event(event: RoSpecEventType, rospec_id: int, preempting_id: int = 0) -> bytes:
    """ROSpecEvent: a ROSpec started, ended or was preempted."""
    return tlv(ParamType.ROSPEC_EVENT, struct.pack("!BII", event, rospec_id, preempting_id))


def aispec_event(rospec_id: int, spec_index: int) -> bytes:
    """AISpecEvent End_of_AISpec."""
    _checked(spec_index, 1, 0xFFFF, "spec index")
    return tlv(ParamType.AISPEC_EVENT, struct.pack("!BIH", 0, rospec_id, spec_index))


def gpi_event(port: int, high: bool) -> bytes:
    """GPIEvent: a GPI input's new level (e.g. a photo-eye blocked: high)."""
    _checked(port, 1, 0xFFFF, "GPI port")
    return tlv(ParamType.GPI_EVENT, struct.pack("!HB", port, 0x80 if high else 0))


def reader_exception_event(text: str) -> bytes:
    """ReaderExceptionEvent with its message (and none of its optional parameters)."""
    raw = text.encode("utf-8")
    return tlv(ParamType.READER_EXCEPTION_EVENT, _U16.pack(len(raw)) + raw)


def connection_close_event() -> bytes:
    """ConnectionCloseEvent: the reader is hanging up."""
    return tlv(ParamType.CONNECTION_CLOSE_EVENT)


def encode_connection_attempt(
    msg_id: int, utc_us: int, status: ConnectionAttempt = ConnectionAttempt.SUCCESS
) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and ConnectionAttemptEvent."""
    return encode_reader_event(msg_id, utc_us, connection_attempt_event(status))


def encode_antenna_event(msg_id: int, utc_us: int, antenna: int, connected: bool) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and AntennaEvent."""
    return encode_reader_event(msg_id, utc_us, antenna_event(antenna, connected))


def encode_rospec_event(
    msg_id: int, utc_us: int, event: RoSpecEventType, rospec_id: int, preempting_id: int = 0
) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and ROSpecEvent."""
    return encode_reader_event(msg_id, utc_us, rospec_event(event, rospec_id, preempting_id))


def encode_aispec_event(msg_id: int, utc_us: int, rospec_id: int, spec_index: int) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and AISpecEvent End_of_AISpec."""
    return encode_reader_event(msg_id, utc_us, aispec_event(rospec_id, spec_index))


def encode_gpi_event(msg_id: int, utc_us: int, port: int, high: bool) -> bytes:
    """READER_EVENT_NOTIFICATION with UTCTimestamp and GPIEvent (the port's new level)."""
    return encode_reader_event(msg_id, utc_us, gpi_event(port, high))


def encode_connection_close(msg_id: int, utc_us: int) -> bytes:
    """READER_EVENT_NOTIFICATION with ConnectionCloseEvent: the reader is hanging up."""
    return encode_reader_event(msg_id, utc_us, connection_close_event())


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
