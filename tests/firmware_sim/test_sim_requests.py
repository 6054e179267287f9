"""Client requests, as sllurp and the edge encode them, parsed into typed values."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from sllurp.llrp_proto import LLRPROSpec

from edge.config import LlrpSettings
from edge.readers.llrp_codec import Frame, LlrpFramer, encode
from edge.readers.llrp_rospec import add_rospec, set_reader_config
from firmware_sim.llrp_params import RequestError
from firmware_sim.llrp_requests import (
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
from firmware_sim.llrp_rospec import RoSpecState
from firmware_sim.llrp_triggers import AiSpecStop, StartTrigger
from firmware_sim.llrp_types import CapabilitySet, MsgType, ReportTrigger, StatusCode
from firmware_sim.probe import raw_request
from tests.edge.readers.r420 import r420_capabilities


def frame_of(data: bytes) -> Frame:
    (frame,) = LlrpFramer().feed(data)
    return frame


def parsed(msg: dict[str, Any]) -> Request:
    return parse_request(frame_of(encode(msg)))


def test_sllurp_rospec() -> None:
    spec = LLRPROSpec(
        None,
        7,
        antennas=(1, 3),
        duration_sec=2.5,
        tag_content_selector={"EnableAntennaID": True, "EnablePeakRSSI": True},
    )
    request = parsed({"ADD_ROSPEC": {"ID": 5, "ROSpec": dict(spec)}})
    assert isinstance(request, AddRoSpec)
    rospec = request.rospec
    assert (rospec.rospec_id, rospec.current_state) == (7, RoSpecState.DISABLED)
    assert rospec.start_trigger is StartTrigger.IMMEDIATE
    assert rospec.stop_duration_ms == 2500
    assert rospec.antennas == (1, 3)
    assert (rospec.aispec_stop, rospec.aispec_duration_ms) == (AiSpecStop.DURATION, 2500)
    assert rospec.report is not None
    assert rospec.report.trigger is ReportTrigger.N_TAGS_OR_END_OF_AISPEC
    assert rospec.report.selector.antenna_id
    assert rospec.report.selector.peak_rssi
    assert rospec.report.selector.rospec_id
    assert not rospec.report.selector.first_seen
    assert rospec.raw[:2] == struct.pack("!H", 177)


def test_the_edges_rospec() -> None:
    settings = LlrpSettings(name="dock1", host="127.0.0.1", report_timeout_ms=150)
    request = parsed(add_rospec(settings, r420_capabilities(2)).message(9))
    assert isinstance(request, AddRoSpec)
    rospec = request.rospec
    assert rospec.antennas == (1, 2)
    assert rospec.stop_duration_ms is None
    assert (rospec.aispec_stop, rospec.aispec_duration_ms) == (AiSpecStop.DURATION, 150)
    assert rospec.report is not None
    assert rospec.report.selector.first_seen
    assert rospec.report.selector.tag_seen_count


def test_all_antennas_and_tag_observation_trigger() -> None:
    spec = LLRPROSpec(None, 1, antennas=(0,), report_every_n_tags=25, report_timeout_ms=300)
    request = parsed({"ADD_ROSPEC": {"ID": 1, "ROSpec": dict(spec)}})
    assert isinstance(request, AddRoSpec)
    assert request.rospec.antennas == (0,)
    assert request.rospec.aispec_stop is AiSpecStop.TAG_OBSERVATION
    assert (request.rospec.aispec_tag_count, request.rospec.aispec_duration_ms) == (25, 300)


def test_the_edges_reader_config() -> None:
    request = parsed(set_reader_config(2.5).message(3))
    assert isinstance(request, SetReaderConfig)
    assert request.keepalive_ms == 2500
    assert request.events["AntennaEvent"] is True
    assert request.events["HoppingEvent"] is False
    assert not request.reset


def test_reader_config_with_report_spec_and_reset() -> None:
    report = {
        "ROReportTrigger": "Upon_N_Milliseconds",
        "N": 250,
        "TagReportContentSelector": {"EnableAntennaID": True},
    }
    msg = {"SET_READER_CONFIG": {"ID": 1, "ResetToFactoryDefaults": True, "ROReportSpec": report}}
    request = parsed(msg)
    assert isinstance(request, SetReaderConfig)
    assert request.reset
    assert request.keepalive_ms is None
    assert request.report is not None
    assert (request.report.trigger, request.report.n) == (ReportTrigger.N_MILLISECONDS, 250)


@pytest.mark.parametrize(
    ("name", "msg_type"),
    [
        ("DELETE_ROSPEC", MsgType.DELETE_ROSPEC),
        ("START_ROSPEC", MsgType.START_ROSPEC),
        ("STOP_ROSPEC", MsgType.STOP_ROSPEC),
        ("ENABLE_ROSPEC", MsgType.ENABLE_ROSPEC),
        ("DISABLE_ROSPEC", MsgType.DISABLE_ROSPEC),
    ],
)
def test_rospec_id_requests(name: str, msg_type: int) -> None:
    request = parsed({name: {"ID": 44, "ROSpecID": 123456}})
    assert request == SpecIdRequest(msg_type, 44, 123456)


def test_accessspec_id_request() -> None:
    request = parsed({"DELETE_ACCESSSPEC": {"ID": 2, "AccessSpecID": 0}})
    assert request == SpecIdRequest(MsgType.DELETE_ACCESSSPEC, 2, 0)


def test_add_accessspec_keeps_the_id() -> None:
    # AccessSpec: id 5, antenna 0, C1G2, disabled, ROSpec 1 (a body sllurp could send).
    access = struct.pack("!HHIHBBI", 207, 16, 5, 0, 1, 0, 1)
    request = parse_request(frame_of(raw_request(MsgType.ADD_ACCESSSPEC, 3, access)))
    assert isinstance(request, AddAccessSpec)
    assert request.access_spec_id == 5


def test_capabilities_and_config_requests() -> None:
    request = parsed({"GET_READER_CAPABILITIES": {"ID": 1, "RequestedData": 3}})
    assert request == CapabilitiesRequest(1, 1, CapabilitySet.REGULATORY)
    # LLRP 1.0.1: AntennaID (u16) comes before RequestedData (u8).
    body = struct.pack("!HBHH", 2, 8, 0, 0)
    request = parse_request(frame_of(raw_request(MsgType.GET_READER_CONFIG, 6, body)))
    assert request == ReaderConfigRequest(2, 6, requested=8, antenna=2)


def test_plain_and_custom_requests() -> None:
    assert parsed({"CLOSE_CONNECTION": {"ID": 3}}) == Request(MsgType.CLOSE_CONNECTION, 3)
    assert parsed({"KEEPALIVE_ACK": {"ID": 4}}) == Request(MsgType.KEEPALIVE_ACK, 4)
    get_rospecs = parse_request(frame_of(raw_request(MsgType.GET_ROSPECS, 8)))
    assert get_rospecs == Request(MsgType.GET_ROSPECS, 8)
    assert parsed({"IMPINJ_ENABLE_EXTENSIONS": {"ID": 9}}) == CustomRequest(1023, 9, 25882, 21)


def test_rospec_without_aispec_is_refused() -> None:
    rospec = struct.pack("!HHIBB", 177, 10, 1, 0, 0)
    with pytest.raises(RequestError) as caught:
        parse_request(frame_of(raw_request(MsgType.ADD_ROSPEC, 1, rospec)))
    assert caught.value.status.code in (StatusCode.PARAMETER_ERROR, StatusCode.MISSING_PARAMETER)


def test_add_rospec_without_rospec_is_refused() -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(frame_of(raw_request(MsgType.ADD_ROSPEC, 1, struct.pack("!HH", 178, 4))))
    assert caught.value.status.code is StatusCode.PARAMETER_ERROR


def test_truncated_spec_id_is_refused() -> None:
    with pytest.raises(RequestError, match="spec id missing"):
        parse_request(frame_of(raw_request(MsgType.START_ROSPEC, 1, b"\x00\x01")))


def test_truncated_parameter_is_refused_not_raised() -> None:
    body = b"\x00" + struct.pack("!HHB", 220, 6, 1)  # a KeepaliveSpec cut short
    with pytest.raises(RequestError) as caught:
        parse_request(frame_of(raw_request(MsgType.SET_READER_CONFIG, 1, body)))
    assert caught.value.status.code is StatusCode.PARAMETER_ERROR


def test_unknown_vendor_parameters_are_ignored() -> None:
    vendor = struct.pack("!HHII", 1023, 12, 99999, 7)
    request = parse_request(frame_of(raw_request(MsgType.SET_READER_CONFIG, 1, b"\x00" + vendor)))
    assert isinstance(request, SetReaderConfig)
    assert request.keepalive_ms is None
