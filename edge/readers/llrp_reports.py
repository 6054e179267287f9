"""What comes back from an LLRP reader, turned from sllurp's dicts into our typed values.

Everything here is pure: a decoded message body (the dict ``llrp_codec.decode`` gives)
goes in, ``TagRead``/``ReaderEvent``/``ReaderCapabilities`` values or an ``LlrpError``
come out. sllurp's dicts stop at this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from edge.errors import ReaderError
from edge.readers.types import (
    AntennaChanged,
    DecodeFailed,
    GpiChanged,
    ReaderEvent,
    ReaderFault,
    TagRead,
)

MAX_DETAIL = 500
"""Longest reader-supplied text (exception message, status description) we pass on."""


class LlrpError(ReaderError):
    """Base of the LLRP client's protocol errors (framing errors are ``LlrpCodecError``)."""


class LlrpReportError(LlrpError):
    """A message of a shape we do not expect (sllurp gave something else): the frame
    counts as undecodable. Its text names the message and the original error."""


SHAPE_ERRORS: Final = (KeyError, TypeError, ValueError, AttributeError, IndexError, UnicodeError)
"""What reading a decoded body of an unexpected shape raises: sllurp hands over dicts of
whatever the bytes said, so every public reader of a body here turns these into
``LlrpReportError`` (the one class the receiving side treats as an undecodable frame)."""


class LlrpStatusError(LlrpError):
    """A response whose LLRPStatus is not Success; names the message and the status."""

    def __init__(self, message_name: str, code: str, description: str) -> None:
        text = f"{message_name}: {code}"
        if description:
            text += f": {description}"
        super().__init__(text)
        self.message_name = message_name
        self.code = code
        self.description = description


def _text(value: object) -> str:
    """Reader-supplied text (bytes from sllurp) as a bounded, printable str."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", errors="replace")
    else:
        text = str(value)
    text = text.replace("\x00", "").strip()
    return text[:MAX_DETAIL]


# --- responses -----------------------------------------------------------------------


def _error_detail(status: Mapping[str, Any]) -> str:
    parts = []
    field = status.get("FieldError")
    if isinstance(field, Mapping):
        parts.append(f"field {field.get('FieldNum')}: {field.get('ErrorCode')}")
    param = status.get("ParameterError")
    if isinstance(param, Mapping):
        parts.append(f"parameter {param.get('ParameterType')}: {param.get('ErrorCode')}")
    return f" ({'; '.join(parts)})" if parts else ""


def check_status(message_name: str, body: Mapping[str, Any]) -> None:
    """Raise unless the response ``body`` carries LLRPStatus Success.

    Raises:
        LlrpStatusError: the status is missing or not Success; the error names
            ``message_name``, the status code and the reader's description.
        LlrpReportError: the status is of a shape sllurp does not give.
    """
    try:
        _check_status(message_name, body)
    except SHAPE_ERRORS as err:
        raise LlrpReportError(f"{message_name}: {type(err).__name__}: {err}") from err


def _check_status(message_name: str, body: Mapping[str, Any]) -> None:
    status = body.get("LLRPStatus")
    if not isinstance(status, Mapping):
        raise LlrpStatusError(message_name, "no LLRPStatus", "")
    # sllurp leaves StatusCode out when the number is not one it knows.
    code = str(status.get("StatusCode", "unknown status code"))
    if code == "Success":
        return
    description = _text(status.get("ErrorDescription", b"")) + _error_detail(status)
    raise LlrpStatusError(message_name, code, description.strip())


@dataclass(frozen=True, slots=True)
class ReaderCapabilities:
    """The parts of GET_READER_CAPABILITIES_RESPONSE the client uses or reports."""

    max_antennas: int
    manufacturer: int
    """IANA private enterprise number (25882 is Impinj, 22695 Zebra)."""
    model: int
    firmware: str
    has_utc_clock: bool
    country_code: int | None
    power_table: tuple[tuple[int, int], ...]
    """Transmit power table: (index, centi-dBm) entries."""
    sensitivity_table: tuple[tuple[int, int], ...]
    """Receive sensitivity table: (index, dB below the best) entries."""
    rf_mode_ids: tuple[int, ...]
    """ModeIdentifiers of the UHF C1G2 RF mode table."""
    gpis: int
    gpos: int
    hop_table_id: int | None = None
    """The first frequency hop table's id (None: a fixed-frequency reader)."""

    @property
    def power_levels(self) -> int:
        """Entries in the transmit power table."""
        return len(self.power_table)

    @property
    def rf_modes(self) -> int:
        """Entries in the UHF C1G2 RF mode table."""
        return len(self.rf_mode_ids)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LlrpError(f"GET_READER_CAPABILITIES_RESPONSE: {what} is {value!r}, not a number")
    return value


_MAX_ANTENNAS = "MaxNumberOfAntennaSupported"


def _entries(value: object) -> list[Mapping[str, Any]]:
    """A repeated parameter as sllurp decodes it: one dict alone, several in a list."""
    if isinstance(value, Mapping):
        return [value]
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _table(value: object, key: str, what: str) -> tuple[tuple[int, int], ...]:
    """(Index, ``key``) pairs of a capability table, sorted by index."""
    pairs = {_int(e.get("Index"), what): _int(e.get(key), what) for e in _entries(value)}
    return tuple(sorted(pairs.items()))


def capabilities(body: Mapping[str, Any]) -> ReaderCapabilities:
    """Read a GET_READER_CAPABILITIES_RESPONSE body (status already checked).

    Raises:
        LlrpError: GeneralDeviceCapabilities is missing or malformed (``LlrpReportError``
            where a part is of a shape sllurp does not give).
    """
    try:
        return _capabilities(body)
    except SHAPE_ERRORS as err:
        raise LlrpReportError(
            f"GET_READER_CAPABILITIES_RESPONSE: {type(err).__name__}: {err}"
        ) from err


def _capabilities(body: Mapping[str, Any]) -> ReaderCapabilities:
    general = body.get("GeneralDeviceCapabilities")
    if not isinstance(general, Mapping):
        raise LlrpError("GET_READER_CAPABILITIES_RESPONSE has no GeneralDeviceCapabilities")
    regulatory = body.get("RegulatoryCapabilities")
    regulatory = regulatory if isinstance(regulatory, Mapping) else {}
    uhf = regulatory.get("UHFBandCapabilities")
    uhf = uhf if isinstance(uhf, Mapping) else {}
    modes = uhf.get("UHFC1G2RFModeTable")
    modes = modes if isinstance(modes, Mapping) else {}
    gpio = general.get("GPIOCapabilities")
    gpio = gpio if isinstance(gpio, Mapping) else {}
    country = regulatory.get("CountryCode")
    frequency = uhf.get("FrequencyInformation")
    hops = _entries(frequency.get("FrequencyHopTable")) if isinstance(frequency, Mapping) else []
    hop_id = hops[0].get("HopTableId") if hops else None
    return ReaderCapabilities(
        max_antennas=_int(general.get(_MAX_ANTENNAS), _MAX_ANTENNAS),
        manufacturer=_int(general.get("DeviceManufacturerName", 0), "DeviceManufacturerName"),
        model=_int(general.get("ModelName", 0), "ModelName"),
        firmware=_text(general.get("ReaderFirmwareVersion", b"")),
        has_utc_clock=bool(general.get("HasUTCClockCapability", False)),
        country_code=country if isinstance(country, int) else None,
        power_table=_table(
            uhf.get("TransmitPowerLevelTableEntry"), "TransmitPowerValue", "power table"
        ),
        sensitivity_table=_table(
            general.get("ReceiveSensitivityTableEntry"),
            "ReceiveSensitivityValue",
            "sensitivity table",
        ),
        rf_mode_ids=tuple(
            _int(e.get("ModeIdentifier"), "ModeIdentifier")
            for e in _entries(modes.get("UHFC1G2RFModeTableEntry"))
        ),
        gpis=int(gpio.get("NumGPIs", 0)),
        gpos=int(gpio.get("NumGPOs", 0)),
        hop_table_id=hop_id if isinstance(hop_id, int) and not isinstance(hop_id, bool) else None,
    )


def antenna_states(body: Mapping[str, Any]) -> dict[int, bool]:
    """Antenna id -> connected, from a GET_READER_CONFIG_RESPONSE body (empty if absent)."""
    props = body.get("AntennaProperties")
    if isinstance(props, Mapping):
        props = [props]
    states: dict[int, bool] = {}
    for prop in props if isinstance(props, list) else ():
        if not isinstance(prop, Mapping):
            continue
        antenna = prop.get("AntennaID")
        if isinstance(antenna, int) and not isinstance(antenna, bool) and antenna > 0:
            states[antenna] = bool(prop.get("AntennaConnected", True))
    return states


# --- tag reports (the hot path) -------------------------------------------------------


def tag_reads(reader: str, body: Mapping[str, Any], now_us: int) -> tuple[list[TagRead], int]:
    """Turn an RO_ACCESS_REPORT body into one ``TagRead`` per TagReportData.

    Readers differ in what they send (a Zebra FX9600 may omit antenna and RSSI, an
    Impinj may add centi-dBm RSSI), so every field but the EPC has a fallback: antenna 0
    means "not reported" (LLRP antennas count from 1), a missing timestamp takes the other
    one and then ``now_us`` (local receive time), a missing seen count is 1.

    Args:
        reader: the reader name put into each read.
        body: the decoded RO_ACCESS_REPORT.
        now_us: local receive time, microseconds since the Unix epoch.

    Returns:
        The reads, and how many entries were skipped because they carried no EPC.

    Raises:
        LlrpReportError: the report is not of the shape sllurp gives (a field of an
            unexpected type, an EPC that is not ASCII hex).
    """
    try:
        return _tag_reads(reader, body, now_us)
    except SHAPE_ERRORS as err:
        raise LlrpReportError(f"RO_ACCESS_REPORT: {type(err).__name__}: {err}") from err


def _tag_reads(reader: str, body: Mapping[str, Any], now_us: int) -> tuple[list[TagRead], int]:
    reads: list[TagRead] = []
    append = reads.append
    skipped = 0
    for tag in body.get("TagReportData") or ():
        # sllurp copies EPC-96 into EPC; both hold the EPC as hex ASCII bytes.
        epc = tag.get("EPC")
        if epc is None:
            epc = tag.get("EPC-96")
        if isinstance(epc, bytes | bytearray) and epc:
            epc_hex = epc.decode("ascii").lower()
        elif isinstance(epc, str) and epc:
            epc_hex = epc.lower()
        else:
            skipped += 1
            continue
        first = tag.get("FirstSeenTimestampUTC")
        last = tag.get("LastSeenTimestampUTC")
        if first is None:
            first = now_us if last is None else last
        if last is None:
            last = first
        # Impinj's extension is centi-dBm and finer than the standard whole dBm.
        centi = tag.get("ImpinjPeakRSSI")
        if centi is not None:
            rssi: float | None = centi / 100.0
        else:
            peak = tag.get("PeakRSSI")
            rssi = None if peak is None else float(peak)
        append(
            TagRead(
                reader,
                epc_hex,
                tag.get("AntennaID") or 0,
                rssi,
                first,
                last,
                tag.get("TagSeenCount") or 1,
            )
        )
    return reads, skipped


# --- reader event notifications ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    """A READER_EVENT_NOTIFICATION: the events to pass on, plus what the client acts on."""

    events: tuple[ReaderEvent, ...]
    connection_attempt: str | None
    """Status of a ConnectionAttemptEvent ("Success" or why not), if one came."""
    closing: bool
    """The reader announced it is closing the connection (ConnectionCloseEvent)."""
    timestamp_us: int | None


def _antenna(reader: str, value: Mapping[str, Any]) -> ReaderEvent:
    antenna = int(value.get("AntennaID", 0))
    connected = value.get("EventType") == "Connected"
    state = "connected" if connected else "disconnected"
    return AntennaChanged(reader, antenna, connected, detail=f"antenna {antenna} {state}")


def _exception(reader: str, value: Mapping[str, Any]) -> ReaderEvent:
    return ReaderFault(reader, _text(value.get("Message", b"")))


def _gpi(reader: str, value: Mapping[str, Any]) -> ReaderEvent:
    high = bool(value.get("GPIEvent"))
    port = value.get("GPIPortNumber")
    detail = f"GPI {port} {'high' if high else 'low'}"
    if isinstance(port, int) and not isinstance(port, bool) and port > 0:
        return GpiChanged(reader, port, high, detail=detail)
    return DecodeFailed(reader, f"{detail}: no usable port number")


def _buffer_warning(reader: str, value: Mapping[str, Any]) -> ReaderEvent:
    full = value.get("ReportBufferPercentageFull", "?")
    return ReaderFault(reader, f"reader report buffer {full}% full")


def _buffer_overflow(reader: str, value: Mapping[str, Any]) -> ReaderEvent:
    return ReaderFault(reader, "reader report buffer overflowed: the reader dropped reports")


_EventConverter = Callable[[str, Mapping[str, Any]], ReaderEvent]

EVENT_CONVERTERS: Mapping[str, _EventConverter] = {
    "AntennaEvent": _antenna,
    "ReaderExceptionEvent": _exception,
    "GPIEvent": _gpi,
    # sllurp names the parameter ReportBufferLevelWarning, the LLRP spec adds "Event".
    "ReportBufferLevelWarning": _buffer_warning,
    "ReportBufferLevelWarningEvent": _buffer_warning,
    "ReportBufferOverflowErrorEvent": _buffer_overflow,
}
"""ReaderEventNotificationData parameters that become a ``ReaderEvent``; the others
(hopping, ROSpec/AISpec start and end) are routine and dropped."""


def notification(reader: str, body: Mapping[str, Any]) -> Notification:
    """Read a READER_EVENT_NOTIFICATION body.

    Raises:
        LlrpReportError: an event in it is of a shape sllurp does not give.
    """
    try:
        return _notification(reader, body)
    except SHAPE_ERRORS as err:
        raise LlrpReportError(f"READER_EVENT_NOTIFICATION: {type(err).__name__}: {err}") from err


def _notification(reader: str, body: Mapping[str, Any]) -> Notification:
    data = body.get("ReaderEventNotificationData")
    if not isinstance(data, Mapping):
        return Notification((), None, False, None)
    events = []
    for key, convert in EVENT_CONVERTERS.items():
        value = data.get(key)
        if value is not None:
            events.append(convert(reader, value if isinstance(value, Mapping) else {}))
    attempt = data.get("ConnectionAttemptEvent")
    status = str(attempt.get("Status", "unknown")) if isinstance(attempt, Mapping) else None
    stamp = data.get("UTCTimestamp")
    micros = stamp.get("Microseconds") if isinstance(stamp, Mapping) else None
    return Notification(
        events=tuple(events),
        connection_attempt=status,
        closing="ConnectionCloseEvent" in data,
        timestamp_us=micros if isinstance(micros, int) else None,
    )
