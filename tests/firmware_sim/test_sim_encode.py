"""The simulator's LLRP encoder: every message decodes with sllurp to the values put in."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sllurp.llrp_proto import decode_all_parameters

from edge.readers.llrp_codec import Decoded, Frame, LlrpFramer, decode
from firmware_sim.errors import EncodeError
from firmware_sim.llrp_encode import (
    custom_message,
    encode_antenna_event,
    encode_capabilities_response,
    encode_connection_attempt,
    encode_connection_close,
    encode_custom_response,
    encode_error_message,
    encode_get_rospecs_response,
    encode_keepalive,
    encode_reader_config_response,
    encode_response,
    llrp_status,
)
from firmware_sim.llrp_types import (
    RESPONSE_TYPES,
    AntennaState,
    CapabilitySet,
    ConfigSet,
    ConnectionAttempt,
    ContentSelector,
    MsgType,
    ReportSpec,
    ReportTrigger,
    Status,
    StatusCode,
    TagReportEntry,
)
from firmware_sim.profile import R420
from firmware_sim.report_encoder import ReportEncoder

CAPTURES = Path(
    os.environ.get(
        "STOCKGATE_LLRP_CAPTURES", Path(__file__).parents[1] / "data" / "llrp-captures.json"
    )
)
UTC = 1_700_000_000_123_456
EPC96 = "3054257bf461a84000000001"
EPC128 = "e28011700000020c1a2b3c4d5e6f7081"


def one_frame(data: bytes) -> Frame:
    frames = list(LlrpFramer().feed(data))
    assert len(frames) == 1
    assert frames[0].raw == data
    return frames[0]


def decoded(data: bytes) -> Decoded:
    """Decode whole, and again fed one byte at a time; both must agree."""
    whole = decode(one_frame(data))
    framer = LlrpFramer()
    trickled = [f for i in range(len(data)) for f in framer.feed(data[i : i + 1])]
    assert [f.raw for f in trickled] == [data]
    assert decode(trickled[0]).body == whole.body
    return whole


def test_connection_attempt_success_is_what_sllurp_expects() -> None:
    msg = decoded(encode_connection_attempt(7, UTC))
    assert msg.name == "READER_EVENT_NOTIFICATION"
    assert msg.frame.msg_id == 7
    data = msg.body["ReaderEventNotificationData"]
    assert data["UTCTimestamp"] == {"Microseconds": UTC}
    assert data["ConnectionAttemptEvent"] == {"Status": "Success"}


@pytest.mark.parametrize("status", list(ConnectionAttempt))
def test_connection_attempt_statuses(status: ConnectionAttempt) -> None:
    data = decoded(encode_connection_attempt(1, UTC, status)).body["ReaderEventNotificationData"]
    assert data["ConnectionAttemptEvent"]["Status"].startswith(
        "Success" if status is ConnectionAttempt.SUCCESS else ("Failed", "Another")
    )


def test_connection_attempt_matches_a_real_readers_layout() -> None:
    # llrp-rs capture: Impinj R420 greeting, id 989540519, UTC 1557458516414125.
    real = bytes.fromhex("043f000000203afb30a700f600160080000c00058880119f8ead010000060000")
    assert encode_connection_attempt(989540519, 1557458516414125) == real


@pytest.mark.parametrize("connected", [True, False])
def test_antenna_event(connected: bool) -> None:
    data = decoded(encode_antenna_event(3, UTC, 4, connected)).body["ReaderEventNotificationData"]
    assert data["UTCTimestamp"] == {"Microseconds": UTC}
    assert data["AntennaEvent"] == {
        "AntennaID": 4,
        "EventType": "Connected" if connected else "Disconnected",
    }


def test_connection_close_event() -> None:
    data = decoded(encode_connection_close(3, UTC)).body["ReaderEventNotificationData"]
    assert "ConnectionCloseEvent" in data


def test_keepalive() -> None:
    msg = decoded(encode_keepalive(42))
    assert (msg.name, msg.frame.msg_id) == ("KEEPALIVE", 42)


def test_error_message_carries_the_status() -> None:
    body = decoded(encode_error_message(9, Status(StatusCode.UNSUPPORTED_MESSAGE, "no"))).body
    assert body["LLRPStatus"] == {"StatusCode": "UnsupportedMessage", "ErrorDescription": b"no"}


# sllurp has no message decoder for these two; their parameters still decode with it.
_NO_SLLURP_MESSAGE = {MsgType.GET_ROSPECS, MsgType.GET_ACCESSSPECS}


def status_of(data: bytes, request_type: int) -> dict[str, Any]:
    frame = one_frame(data)
    assert frame.msg_type == RESPONSE_TYPES[request_type]
    if request_type in _NO_SLLURP_MESSAGE:
        params, _ = decode_all_parameters(frame.raw[10:])
        return dict(params["LLRPStatus"])
    return dict(decoded(data).body["LLRPStatus"])


@pytest.mark.parametrize("request_type", sorted(RESPONSE_TYPES))
def test_every_response_carries_success(request_type: int) -> None:
    data = encode_response(request_type, 1234, Status())
    assert one_frame(data).msg_id == 1234
    assert status_of(data, request_type) == {"StatusCode": "Success", "ErrorDescription": b""}


@pytest.mark.parametrize("request_type", sorted(RESPONSE_TYPES))
def test_every_response_carries_a_field_error(request_type: int) -> None:
    status = Status(StatusCode.FIELD_ERROR, "ROSpecID 9: no such ROSpec", field_num=0)
    assert status_of(encode_response(request_type, 5, status), request_type) == {
        "StatusCode": "FieldError",
        "ErrorDescription": b"ROSpecID 9: no such ROSpec",
        "FieldError": {"FieldNum": 0, "ErrorCode": "A_Invalid"},
    }


def test_response_to_a_message_without_one_is_refused() -> None:
    with pytest.raises(EncodeError, match="no response"):
        encode_response(MsgType.ENABLE_EVENTS_AND_REPORTS, 1)


def test_status_description_is_bounded() -> None:
    param = llrp_status(Status(StatusCode.DEVICE_ERROR, "x" * 5000))
    assert len(param) == 4 + 4 + 200


def test_impinj_enable_extensions_response() -> None:
    msg = decoded(encode_custom_response(25882, 22, 8, Status()))
    assert msg.name == "IMPINJ_ENABLE_EXTENSIONS_RESPONSE"
    assert msg.body["LLRPStatus"]["StatusCode"] == "Success"


def test_get_rospecs_response_lists_the_rospecs() -> None:
    rospec = struct.pack("!HHIBB", 177, 10, 7, 0, 2)
    frame = one_frame(encode_get_rospecs_response(3, [rospec]))
    assert frame.msg_type == MsgType.GET_ROSPECS_RESPONSE
    params, _ = decode_all_parameters(frame.raw[10:])
    assert params["LLRPStatus"]["StatusCode"] == "Success"
    assert params["ROSpec"] == {"ROSpecID": 7, "Priority": 0, "CurrentState": 2}


# --- capabilities -------------------------------------------------------------------------


def r420_capture() -> bytes:
    captures = json.loads(CAPTURES.read_text())
    (entry,) = [c for c in captures if c["id"] == "edgex-GetReaderCapabilitiesResponse-000"]
    return bytes.fromhex(entry["hex"])


def test_capabilities_are_byte_for_byte_a_recorded_r420() -> None:
    assert encode_capabilities_response(0, R420, 4) == r420_capture()


@pytest.mark.parametrize("antennas", range(1, 9))
def test_capabilities_decode_with_what_sllurp_needs(antennas: int) -> None:
    body = decoded(encode_capabilities_response(77, R420, antennas)).body
    assert body["LLRPStatus"]["StatusCode"] == "Success"
    general = body["GeneralDeviceCapabilities"]
    assert general["MaxNumberOfAntennaSupported"] == antennas
    assert general["DeviceManufacturerName"] == 25882
    assert general["ModelName"] == 2001002
    assert general["ReaderFirmwareVersion"] == b"5.14.0.240"
    assert general["HasUTCClockCapability"] is True
    assert [p["AntennaID"] for p in general["PerAntennaAirProtocol"]] == list(
        range(1, antennas + 1)
    )
    band = body["RegulatoryCapabilities"]["UHFBandCapabilities"]
    powers = band["TransmitPowerLevelTableEntry"]
    assert [p["Index"] for p in powers] == list(range(1, 82))
    assert (powers[0]["TransmitPowerValue"], powers[-1]["TransmitPowerValue"]) == (1000, 3000)
    modes = band["UHFC1G2RFModeTable"]["UHFC1G2RFModeTableEntry"]
    assert [m["ModeIdentifier"] for m in modes] == [m.mode_id for m in R420.rf_modes]
    assert band["FrequencyInformation"]["FrequencyHopTable"][0]["NumHops"] == 50
    assert body["RegulatoryCapabilities"]["CountryCode"] == 840
    assert body["LLRPCapabilities"]["MaxNumROSpec"] == 1
    assert body["C1G2LLRPCapabilities"]["MaxNumSelectFiltersPerQuery"] == 2


@pytest.mark.parametrize(
    ("requested", "present"),
    [
        (CapabilitySet.GENERAL, "GeneralDeviceCapabilities"),
        (CapabilitySet.LLRP, "LLRPCapabilities"),
        (CapabilitySet.REGULATORY, "RegulatoryCapabilities"),
        (CapabilitySet.AIR_PROTOCOL, "C1G2LLRPCapabilities"),
    ],
)
def test_capabilities_only_what_was_asked(requested: CapabilitySet, present: str) -> None:
    body = decoded(encode_capabilities_response(1, R420, 2, requested)).body
    sections = {
        "GeneralDeviceCapabilities",
        "LLRPCapabilities",
        "RegulatoryCapabilities",
        "C1G2LLRPCapabilities",
    }
    assert sections & set(body) == {present}


def test_reader_config_response() -> None:
    body = decoded(
        encode_reader_config_response(
            4,
            reader_mac=bytes.fromhex("020102030405"),
            antennas=[AntennaState(1, True), AntennaState(2, False, 600)],
            report_spec=ReportSpec(ReportTrigger.N_TAGS_OR_END_OF_ROSPEC, 5, ContentSelector()),
            keepalive_ms=2500,
        )
    ).body
    assert body["LLRPStatus"]["StatusCode"] == "Success"
    assert body["Identification"] == {"IDType": "MAC Address", "ReaderID": b"020102030405"}
    assert body["AntennaProperties"] == [
        {"AntennaConnected": True, "AntennaID": 1, "AntennaGain": 0},
        {"AntennaConnected": False, "AntennaID": 2, "AntennaGain": 600},
    ]
    report = body["ROReportSpec"]
    assert (report["ROReportTrigger"], report["N"]) == ("Upon_N_Tags_Or_End_Of_ROSpec", 5)
    assert report["TagReportContentSelector"]["EnableAntennaID"] is True
    assert report["TagReportContentSelector"]["EnableROSpecID"] is False
    assert body["KeepaliveSpec"] == {"KeepaliveTriggerType": "Immediate", "TimeInterval": 2500}


def test_reader_config_response_only_the_keepalive() -> None:
    body = decoded(
        encode_reader_config_response(
            4,
            reader_mac=bytes(6),
            antennas=[AntennaState(1, True)],
            report_spec=ReportSpec(),
            keepalive_ms=0,
            requested=ConfigSet.KEEPALIVE_SPEC,
        )
    ).body
    assert body["KeepaliveSpec"] == {"KeepaliveTriggerType": "Null", "TimeInterval": 0}
    assert "AntennaProperties" not in body
    assert "Identification" not in body


# --- tag reports --------------------------------------------------------------------------

FULL = ContentSelector(*([True] * 10))
FIELD_OF = {
    "antenna_id": ("AntennaID", "antenna"),
    "peak_rssi": ("PeakRSSI", "peak_rssi"),
    "channel_index": ("ChannelIndex", "channel_index"),
    "first_seen": ("FirstSeenTimestampUTC", "first_seen_us"),
    "last_seen": ("LastSeenTimestampUTC", "last_seen_us"),
    "tag_seen_count": ("TagSeenCount", "seen_count"),
}


def test_report_with_every_field() -> None:
    encoder = ReportEncoder(FULL, rospec_id=9, spec_index=1, inventory_parameter_spec_id=3)
    entries = [
        TagReportEntry(EPC96, 2, -55, UTC, UTC + 900, 4, 17),
        TagReportEntry(EPC128, 1, -71, UTC + 5, UTC + 5, 1, 3),
    ]
    body = decoded(encoder.encode(12, entries)).body
    first, second = body["TagReportData"]
    assert first["EPC-96"] == EPC96.encode()
    assert first["EPC"] == EPC96.encode()
    assert "EPC-96" not in second
    assert second["EPC"] == EPC128.encode()
    assert first["ROSpecID"] == 9
    assert first["SpecIndex"] == 1
    assert first["InventoryParameterSpecID"] == 3
    assert first["AccessSpecID"] == 0
    for entry, tag in zip(entries, (first, second), strict=True):
        for key, attr in FIELD_OF.values():
            assert tag[key] == getattr(entry, attr)


def test_epc96_is_tv13_and_others_are_epcdata() -> None:
    encoder = ReportEncoder(ContentSelector())
    short = encoder.tag_report_data(TagReportEntry(EPC96, 1, -40, UTC, UTC, 1))
    assert short[4] == 0x80 | 13
    long = encoder.tag_report_data(TagReportEntry(EPC128, 1, -40, UTC, UTC, 1))
    assert struct.unpack_from("!HH", long, 4) == (241, 4 + 2 + 16)
    assert struct.unpack_from("!H", long, 8) == (128,)


def test_counts_saturate_and_rssi_clamps() -> None:
    encoder = ReportEncoder(FULL)
    body = decoded(encoder.encode(1, [TagReportEntry(EPC96, 1, -300, UTC, UTC, 99_999)])).body
    (tag,) = body["TagReportData"]
    assert (tag["TagSeenCount"], tag["PeakRSSI"]) == (65535, -128)


def test_empty_report() -> None:
    body = decoded(ReportEncoder(FULL).encode(1, [])).body
    assert body["TagReportData"] == []


@pytest.mark.parametrize("epc", ["", "xyz0", "30542", "ab" * 63])
def test_bad_epcs_are_refused(epc: str) -> None:
    with pytest.raises(EncodeError):
        ReportEncoder(FULL).tag_report_data(TagReportEntry(epc, 1, -50, UTC, UTC, 1))


def test_antenna_zero_is_refused() -> None:
    with pytest.raises(EncodeError, match="antenna"):
        ReportEncoder(FULL).tag_report_data(TagReportEntry(EPC96, 0, -50, UTC, UTC, 1))


def test_custom_message_header() -> None:
    frame = one_frame(custom_message(25882, 22, 5, llrp_status()))
    assert frame.msg_type == MsgType.CUSTOM_MESSAGE
    assert struct.unpack_from("!IB", frame.raw, 10) == (25882, 22)


selectors = st.builds(ContentSelector, *([st.booleans()] * 10))
entries = st.builds(
    TagReportEntry,
    epc_hex=st.sampled_from([EPC96, EPC128, "3034", "30" * 62]),
    antenna=st.integers(1, 0xFFFF),
    peak_rssi=st.integers(-128, 127),
    first_seen_us=st.integers(0, 2**64 - 1),
    last_seen_us=st.integers(0, 2**64 - 1),
    seen_count=st.integers(1, 0xFFFF),
    channel_index=st.integers(1, 0xFFFF),
)


@settings(max_examples=150, deadline=None)
@given(selector=selectors, batch=st.lists(entries, max_size=20), msg_id=st.integers(0, 2**32 - 1))
def test_any_report_round_trips(
    selector: ContentSelector, batch: list[TagReportEntry], msg_id: int
) -> None:
    msg = decode(one_frame(ReportEncoder(selector, rospec_id=3).encode(msg_id, batch)))
    assert msg.frame.msg_id == msg_id
    tags = msg.body["TagReportData"]
    assert len(tags) == len(batch)
    for entry, tag in zip(batch, tags, strict=True):
        assert tag["EPC"] == entry.epc_hex.encode()
        assert ("EPC-96" in tag) == (len(entry.epc_hex) == 24)
        for flag, (key, attr) in FIELD_OF.items():
            if getattr(selector, flag):
                assert tag[key] == getattr(entry, attr)
            else:
                assert key not in tag
        assert ("ROSpecID" in tag) == selector.rospec_id


@given(flags=st.integers(0, 0xFFFF))
def test_selector_flags_round_trip(flags: int) -> None:
    assert ContentSelector.from_flags(flags).flags() == flags & 0xFFC0
