"""LLRP 1.0.1's numbers and the typed values both directions use (no I/O, no encoding).

Message and parameter types, status codes, the enumerations a reader and its client
exchange, and the frozen values built from them: an ``LLRPStatus`` (``Status``), a
TagReportContentSelector, an ROReportSpec, one TagReportData entry. The encoders
(``llrp_encode``, ``report_encoder``) and the request parsers (``llrp_requests``) share
them, so a request is read and its answer written in the same terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Final, NamedTuple


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
    READER_EXCEPTION_EVENT = 252
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


class RoSpecEventType(IntEnum):
    """ROSpecEvent EventType (LLRP 1.0.1 §16.2.7.6.3)."""

    START = 0
    END = 1
    PREEMPTION = 2


class CapabilitySet(IntEnum):
    """GET_READER_CAPABILITIES RequestedData."""

    ALL = 0
    GENERAL = 1
    LLRP = 2
    REGULATORY = 3
    AIR_PROTOCOL = 4


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


IMPINJ_VENDOR_ID: Final = 25882
IMPINJ_ENABLE_EXTENSIONS: Final = 21
IMPINJ_ENABLE_EXTENSIONS_RESPONSE: Final = 22
IMPINJ_RF_PHASE_ANGLE: Final = 56
IMPINJ_PEAK_RSSI: Final = 57


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


@dataclass(frozen=True, slots=True)
class AntennaState:
    """One antenna port as GET_READER_CONFIG reports it."""

    antenna: int
    connected: bool
    gain_centi_dbi: int = 0
