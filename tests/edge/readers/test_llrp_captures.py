"""LLRP conformance on recorded captures: every message real readers sent decodes through
the project's LLRP path (LlrpFramer + decode + our conversions), fed whole and fed one
byte at a time, and gives the values its source states."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.readers.llrp_codec import Decoded, Frame, LlrpFramer, decode
from edge.readers.llrp_reports import (
    LlrpError,
    LlrpReportError,
    LlrpStatusError,
    capabilities,
    check_status,
    notification,
    tag_reads,
)

DEFAULT_CAPTURES = Path(__file__).resolve().parents[2] / "data" / "llrp-captures.json"
CAPTURES_PATH = Path(os.environ.get("STOCKGATE_LLRP_CAPTURES") or DEFAULT_CAPTURES)
CAPTURES: list[dict[str, Any]] = json.loads(CAPTURES_PATH.read_text(encoding="utf-8"))
RECEIVED_US = 1_700_000_000_000_000
"""Stand-in local receive time for the fallback of reads without timestamps."""


def feed_whole(raw: bytes) -> list[Frame]:
    framer = LlrpFramer()
    frames = list(framer.feed(raw))
    assert framer.buffered == 0
    return frames


def feed_bytewise(raw: bytes) -> list[Frame]:
    framer = LlrpFramer()
    frames: list[Frame] = []
    for i in range(len(raw)):
        frames.extend(framer.feed(raw[i : i + 1]))
    assert framer.buffered == 0
    return frames


def stated_of(capture: dict[str, Any]) -> Any:
    return capture["expected_decoded_fields_if_the_source_states_them"]


# --- per message kind: the values each source states ------------------------------------


def check_report(capture: dict[str, Any], frames: list[Frame], decoded: list[Decoded]) -> None:
    raw_len = len(bytes.fromhex(capture["hex"]))
    per_frame = [tag_reads("dock1", d.body, RECEIVED_US) for d in decoded]
    for (reads, skipped), d in zip(per_frame, decoded, strict=True):
        assert skipped == 0
        assert len(reads) == len(d.body["TagReportData"])
        for read in reads:
            assert read.reader == "dock1"
            assert re.fullmatch(r"[0-9a-f]+", read.epc_hex)
            assert read.seen_count >= 1
            assert read.first_seen_us <= read.last_seen_us
    reads = [read for rs, _ in per_frame for read in rs]
    stated = stated_of(capture)
    if stated is None:
        # No values stated: every tag entry still becomes a read with its EPC.
        tags = [tag for d in decoded for tag in d.body["TagReportData"]]
        assert reads
        for read, tag in zip(reads, tags, strict=True):
            assert read.epc_hex == tag["EPC"].decode()
        return
    stated = dict(stated)
    stated.pop("note", None)
    if "tag_report_callbacks" in stated:
        assert len(frames) == stated.pop("tag_report_callbacks")
        assert raw_len == stated.pop("total_bytes")
        assert all(len(rs) == 1 for rs, _ in per_frame)
    if "ID" in stated:
        assert [f.msg_id for f in frames] == [stated.pop("ID")]
    if "TagReportData" in stated:
        entries = stated.pop("TagReportData")
        assert len(reads) == len(entries)
        for read, entry in zip(reads, entries, strict=True):
            check_read(read, dict(entry), decoded[0].body["TagReportData"][0])
    if "EPC-96" in stated:
        check_read(reads[0], stated, decoded[0].body["TagReportData"][0])
        stated.clear()
    assert not stated, f"stated values left unchecked: {stated}"


def check_read(read: Any, stated: dict[str, Any], tag: dict[str, Any]) -> None:
    """One TagRead against the stated values, and the fallbacks where the reader sent none."""
    stated.pop("EPC96_b64", None)  # the same EPC as EPC96_hex, base64 in the source
    assert read.epc_hex == (stated.pop("EPC-96", None) or stated.pop("EPC96_hex"))
    if "AntennaID" in stated:
        assert read.antenna == stated.pop("AntennaID")
    else:
        assert "AntennaID" not in tag
        assert read.antenna == 0
    if "PeakRSSI" in stated:
        assert read.rssi == float(stated.pop("PeakRSSI"))
    else:
        assert "PeakRSSI" not in tag
        assert read.rssi is None
    first = stated.pop("FirstSeenUTC", None) or stated.pop("FirstSeenTimestampUTC", None)
    last = stated.pop("LastSeenTimestampUTC", None)
    assert first or last
    # A missing timestamp takes the other one.
    assert read.first_seen_us == (first or last)
    assert read.last_seen_us == (last or first)
    assert read.seen_count == stated.pop("TagSeenCount", 1)
    if "ChannelIndex" in stated:
        assert tag["ChannelIndex"] == stated.pop("ChannelIndex")
    for name in ("C1G2ReadOpSpecResult", "C1G2BlockWriteOpSpecResult"):
        if name in stated:
            check_op_result(dict(stated.pop(name)), tag[name])
    assert not stated, f"stated values left unchecked: {stated}"


def check_op_result(stated: dict[str, Any], result: dict[str, Any]) -> None:
    code = re.search(r"\((\d+)\)", stated.pop("Result"))
    assert code is not None
    assert result["Result"] == int(code.group(1))
    assert result["OpSpecID"] == stated.pop("OpSpecID")
    if "ReadData" in stated:
        assert result["ReadData"] == bytes(stated.pop("ReadData"))
    if "ReadDataWordCount" in stated:
        count = stated.pop("ReadDataWordCount")
        assert result["ReadDataWordCount"] == count
        assert len(result["ReadData"]) == 2 * count
        assert result["ReadData"][:2].hex() == stated.pop("ReadData_first_word")
        assert result["ReadData"][-2:].hex() == stated.pop("ReadData_last_word")
    if "NumWordsWritten" in stated:
        assert result["NumWordsWritten"] == stated.pop("NumWordsWritten")
    assert not stated, f"stated values left unchecked: {stated}"


def check_notification(
    capture: dict[str, Any], frames: list[Frame], decoded: list[Decoded]
) -> None:
    assert len(decoded) == 1
    note = notification("dock1", decoded[0].body)
    data = decoded[0].body["ReaderEventNotificationData"]
    assert note.timestamp_us == data["UTCTimestamp"]["Microseconds"]
    stated = stated_of(capture)
    if isinstance(stated, str):
        # The source states which events it holds, in words.
        if "ConnectionAttemptEvent" in stated:
            assert note.connection_attempt == "Success"
            assert note.events == ()
        if "AntennaEvent" in stated:
            (event,) = note.events
            assert event.kind == "antenna"
            assert event.antenna == data["AntennaEvent"]["AntennaID"]
            assert event.connected == (data["AntennaEvent"]["EventType"] == "Connected")
        return
    stated = dict(stated)
    if "ID" in stated:
        assert frames[0].msg_id == stated.pop("ID")
    if "UTCTimestamp" in stated:
        assert note.timestamp_us == stated.pop("UTCTimestamp")
    if "ConnectionAttemptEvent" in stated:
        assert note.connection_attempt == stated.pop("ConnectionAttemptEvent")
    if "ReaderEventNotificationData" in stated:
        expected = dict(stated.pop("ReaderEventNotificationData"))
        assert note.timestamp_us == expected.pop("UTCTimestamp")
        assert note.closing == ("ConnectionCloseEvent" in expected)
        present = {k for k, v in expected.items() if v is not None}
        assert present <= {"ConnectionCloseEvent", "Uptime"}
        assert note.connection_attempt is None
        assert note.events == ()
    assert not stated, f"stated values left unchecked: {stated}"


CAPABILITY_FIELDS = {
    "MaxSupportedAntennas": "max_antennas",
    "MaxNumberOfAntennaSupported": "max_antennas",
    "DeviceManufacturer": "manufacturer",
    "DeviceManufacturerName": "manufacturer",
    "Model": "model",
    "ModelName": "model",
    "FirmwareVersion": "firmware",
    "ReaderFirmwareVersion": "firmware",
    "CountryCode": "country_code",
    "HasUTCClockCapability": "has_utc_clock",
    "n_TransmitPowerLevels": "power_levels",
    "n_TransmitPowerLevelTableEntry": "power_levels",
    "n_UHFC1G2RFModeTableEntry": "rf_modes",
}
"""Names the sources use -> ReaderCapabilities attribute."""


def check_capabilities(
    capture: dict[str, Any], frames: list[Frame], decoded: list[Decoded]
) -> None:
    (message,) = decoded
    check_status("GET_READER_CAPABILITIES_RESPONSE", message.body)
    caps = capabilities(message.body)
    # Every capture names the reader: "(manufacturer N, model N, fw X)".
    model = re.search(
        r"manufacturer (\d+), model (\d+), fw ([\d.]+)", capture["reader_model_if_known"]
    )
    assert model is not None
    assert (caps.manufacturer, caps.model, caps.firmware) == (
        int(model.group(1)),
        int(model.group(2)),
        model.group(3),
    )
    stated = dict(stated_of(capture) or {})
    stated.pop("note", None)
    for key in [k for k in stated if k in CAPABILITY_FIELDS]:
        assert getattr(caps, CAPABILITY_FIELDS[key]) == stated.pop(key), key
    body = message.body
    uhf = body["RegulatoryCapabilities"]["UHFBandCapabilities"]
    powers = {e["Index"]: e["TransmitPowerValue"] for e in uhf["TransmitPowerLevelTableEntry"]}
    for key in [k for k in stated if k.startswith("TxPower[")]:
        assert powers[int(key[len("TxPower[") : -1])] == stated.pop(key)
    if "n_ReceiveSensitivityTableEntry" in stated:
        entries = body["GeneralDeviceCapabilities"]["ReceiveSensitivityTableEntry"]
        assert len(entries) == stated.pop("n_ReceiveSensitivityTableEntry")
    if "GPIOCapabilities" in stated:
        gpio = stated.pop("GPIOCapabilities")
        assert (caps.gpis, caps.gpos) == (gpio["NumGPIs"], gpio["NumGPOs"])
    if "FrequencyHopTable[0].n" in stated:
        table = uhf["FrequencyInformation"]["FrequencyHopTable"][0]
        assert table["NumHops"] == len(table["Frequency"]) == stated.pop("FrequencyHopTable[0].n")
    if "MaxNumSelectFiltersPerQuery" in stated:
        limit = body["C1G2LLRPCapabilities"]["MaxNumSelectFiltersPerQuery"]
        assert limit == stated.pop("MaxNumSelectFiltersPerQuery")
    assert not stated, f"stated values left unchecked: {stated}"


GO_NAMES = {
    "AntennaConfigurations": "AntennaConfiguration",
    "KeepAliveSpec": "KeepaliveSpec",
    "GPIPortCurrentStates": "GPIPortCurrentState",
}
"""device-rfid-llrp-go's field names where they differ from the LLRP parameter names."""


def check_config(capture: dict[str, Any], frames: list[Frame], decoded: list[Decoded]) -> None:
    (message,) = decoded
    check_status("GET_READER_CONFIG_RESPONSE", message.body)
    stated = dict(stated_of(capture))
    stated.pop("note", None)
    keys = set(message.body)
    if "length" in stated:
        assert len(frames[0].raw) == stated.pop("length")
    if "top_level_keys" in stated:
        # sllurp's own test counts the keys of its dict, header fields included.
        assert len(keys) == stated.pop("top_level_keys")
    if "must_contain" in stated:
        assert set(stated.pop("must_contain")) <= keys
    if "keys_present" in stated:
        assert {GO_NAMES.get(k, k) for k in stated.pop("keys_present")} <= keys
    assert not stated, f"stated values left unchecked: {stated}"


def check_delete_accessspec_error(
    capture: dict[str, Any], frames: list[Frame], decoded: list[Decoded]
) -> None:
    (message,) = decoded
    stated = dict(stated_of(capture))
    assert frames[0].msg_id == stated.pop("ID")
    with pytest.raises(LlrpStatusError) as caught:
        check_status("DELETE_ACCESSSPEC_RESPONSE", message.body)
    error = caught.value
    # sllurp names status codes without the "M_" of the LLRP spec.
    assert error.code == stated.pop("StatusCode").removeprefix("M_")
    assert error.description.startswith(stated.pop("ErrorDescription"))
    field = stated.pop("FieldError")
    assert f"field {field['FieldNum']}: {field['ErrorCode']}" in error.description
    assert "DELETE_ACCESSSPEC_RESPONSE" in str(error)
    assert not stated, f"stated values left unchecked: {stated}"


Check = Callable[[dict[str, Any], list[Frame], list[Decoded]], None]
CHECKS: dict[str, Check] = {
    "RO_ACCESS_REPORT": check_report,
    "READER_EVENT_NOTIFICATION": check_notification,
    "GET_READER_CAPABILITIES_RESPONSE": check_capabilities,
    "GET_READER_CONFIG_RESPONSE": check_config,
    "DELETE_ACCESSSPEC_RESPONSE": check_delete_accessspec_error,
}


def test_captures_are_there() -> None:
    assert len(CAPTURES) >= 25
    assert len({c["id"] for c in CAPTURES}) == len(CAPTURES)


@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])
@pytest.mark.parametrize("capture", CAPTURES, ids=[c["id"] for c in CAPTURES])
def test_capture_decodes_with_stated_values(
    capture: dict[str, Any], feed: Callable[[bytes], list[Frame]]
) -> None:
    raw = bytes.fromhex(capture["hex"])
    frames = feed(raw)
    assert b"".join(f.raw for f in frames) == raw
    decoded = [decode(f) for f in frames]
    kind = capture["message_type"].split()[0]
    assert {d.name for d in decoded} == {kind}
    CHECKS[kind](capture, frames, decoded)


def test_whole_stream_of_all_captures_keeps_framing() -> None:
    """All captures back to back, cut at an awkward size, frame as they were."""
    stream = b"".join(bytes.fromhex(c["hex"]) for c in CAPTURES)
    framer = LlrpFramer()
    frames: list[Frame] = []
    for start in range(0, len(stream), 7):
        frames.extend(framer.feed(stream[start : start + 7]))
    assert framer.buffered == 0
    expected = [f.raw for c in CAPTURES for f in feed_whole(bytes.fromhex(c["hex"]))]
    assert [f.raw for f in frames] == expected


def test_a_report_of_an_unexpected_shape_is_an_llrp_error_with_the_cause_named() -> None:
    """sllurp's dicts stop at llrp_reports: a shape it should not give (here an EPC that
    is not ASCII, an antenna id that is not a number, a list that is not one) leaves as
    ``LlrpReportError`` naming the message and the error that met it, which the reader
    reports as an undecodable frame."""
    not_ascii = {"TagReportData": [{"EPC": b"\xff\xfe"}]}
    with pytest.raises(LlrpReportError, match="can't decode byte 0xff") as caught:
        tag_reads("dock1", not_ascii, RECEIVED_US)
    assert isinstance(caught.value, LlrpError)
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)
    assert str(caught.value) == f"RO_ACCESS_REPORT: UnicodeDecodeError: {caught.value.__cause__}"
    odd_event = {"ReaderEventNotificationData": {"AntennaEvent": {"AntennaID": "x"}}}
    with pytest.raises(LlrpReportError, match=r"^READER_EVENT_NOTIFICATION: ValueError: "):
        notification("dock1", odd_event)
    not_a_list = {"TagReportData": 5}
    with pytest.raises(LlrpReportError) as caught:
        tag_reads("dock1", not_a_list, RECEIVED_US)
    assert isinstance(caught.value.__cause__, TypeError)
