"""The LLRP requests as data: report triggers, antennas, status checks."""

from __future__ import annotations

import pytest

from edge.config import LlrpSettings
from edge.readers import llrp_rospec
from edge.readers.llrp_codec import LlrpFramer, decode, encode
from edge.readers.llrp_reports import LlrpError, LlrpStatusError, check_status
from tests.edge.readers.r420 import r420_capabilities


@pytest.mark.parametrize(
    ("every_n", "timeout_ms", "stop_type", "duration", "n"),
    [
        (0, 200, "Duration", 200, 0),  # a report at the end of each 200 ms AISpec
        (50, 100, "Duration", 100, 50),  # every 50 tags, at the latest every 100 ms
        (25, 0, "Null", 0, 25),  # only every 25 tags
        (0, 0, "Null", 0, 1),  # neither: a report per tag, never none at all
    ],
)
def test_report_triggers(
    every_n: int, timeout_ms: int, stop_type: str, duration: int, n: int
) -> None:
    stop, got_n = llrp_rospec.report_triggers(every_n, timeout_ms)
    assert stop == {"AISpecStopTriggerType": stop_type, "DurationTriggerValue": duration}
    assert got_n == n


def test_inventory_antennas() -> None:
    assert llrp_rospec.inventory_antennas([], 4) == [1, 2, 3, 4]
    assert llrp_rospec.inventory_antennas([2, 2, 1], 4) == [1, 2]
    with pytest.raises(LlrpError, match=r"\[5, 6\].*4 antennas"):
        llrp_rospec.inventory_antennas([1, 5, 6], 4)
    with pytest.raises(LlrpError, match="MaxNumberOfAntennaSupported 0"):
        llrp_rospec.inventory_antennas([], 0)


def test_rospec_encodes_without_rf_transmitter() -> None:
    config = LlrpSettings(name="dock1", host="127.0.0.1", antennas=[1])
    raw = encode(llrp_rospec.add_rospec(config, r420_capabilities(2)).message(7))
    (frame,) = LlrpFramer().feed(raw)
    assert (frame.msg_type, frame.msg_id, len(frame.raw)) == (20, 7, len(raw))
    spec = llrp_rospec.rospec(config, r420_capabilities(2))
    antenna_config = spec["AISpec"][0]["InventoryParameterSpec"][0]["AntennaConfiguration"]
    assert [c["AntennaID"] for c in antenna_config] == [1]
    assert all("RFTransmitter" not in c for c in antenna_config)


def test_keepalive_interval_in_milliseconds() -> None:
    body = llrp_rospec.set_reader_config(2.5).body
    assert body["KeepaliveSpec"] == {"KeepaliveTriggerType": 1, "TimeInterval": 2500}


def test_check_status_names_message_and_status() -> None:
    raw = bytes.fromhex("043e0000000a00000001")  # KEEPALIVE: decodes, carries no status
    body = decode(next(iter(LlrpFramer().feed(raw)))).body
    with pytest.raises(LlrpStatusError, match=r"^ADD_ROSPEC_RESPONSE: no LLRPStatus$"):
        check_status("ADD_ROSPEC_RESPONSE", body)
    check_status("X", {"LLRPStatus": {"StatusCode": "Success", "ErrorDescription": b""}})
    with pytest.raises(LlrpStatusError, match=r"^X: unknown status code: oops$"):
        check_status("X", {"LLRPStatus": {"ErrorDescription": b"oops"}})


def test_rf_settings_map_to_the_readers_tables() -> None:
    caps = r420_capabilities(4)  # power 10..30 dBm in 0.25 dB steps, indexes from 1
    config = LlrpSettings.model_validate(
        {
            "name": "dock1",
            "host": "127.0.0.1",
            "tx_power_dbm": 27.1,
            "rx_sensitivity_db": 10,
            "antenna_rf": [{"antenna": 3, "tx_power_dbm": 9.8}, {"antenna": 4}],
        }
    )
    plan = llrp_rospec.rf_plan(config, caps, [1, 2, 3, 4])
    assert [(a.antenna, a.power_dbm) for a in plan.antennas] == [
        (1, 27.0),
        (2, 27.0),
        (3, 10.0),  # 0.2 dB under the table's floor still takes the floor
        (4, 27.0),
    ]
    assert plan.antennas[0].power_index == 1 + (2700 - 1000) // 25
    assert {a.sensitivity_index for a in plan.antennas} == {2}
    assert plan.impinj
    assert "power 10/27 dBm" in plan.describe()
    spec = llrp_rospec.rospec(config, caps)
    antenna_config = spec["AISpec"][0]["InventoryParameterSpec"][0]["AntennaConfiguration"]
    assert antenna_config[2]["RFTransmitter"]["TransmitPower"] == 1
    assert antenna_config[0]["RFReceiver"] == {"ReceiverSensitivity": 2}
    singulation = antenna_config[0]["C1G2InventoryCommand"][0]["C1G2SingulationControl"]
    assert (singulation["Session"], singulation["TagPopulation"]) == (1, 32)


def test_rf_settings_a_file_cannot_hold() -> None:
    base = {"name": "dock1", "host": "127.0.0.1"}
    with pytest.raises(ValueError, match="antenna_rf names an antenna twice"):
        LlrpSettings.model_validate(base | {"antenna_rf": [{"antenna": 1}, {"antenna": 1}]})
    with pytest.raises(ValueError, match=r"antenna_rf names antennas \[3\] that are not in"):
        LlrpSettings.model_validate(base | {"antennas": [1, 2], "antenna_rf": [{"antenna": 3}]})
    with pytest.raises(ValueError, match="session"):
        LlrpSettings.model_validate(base | {"session": 4})
    with pytest.raises(ValueError, match="search_mode"):
        LlrpSettings.model_validate(base | {"search_mode": "triple_target"})
    caps = r420_capabilities(2)
    beyond = LlrpSettings.model_validate(base | {"antenna_rf": [{"antenna": 3}]})
    with pytest.raises(llrp_rospec.LlrpConfigError, match=r"antenna_rf names antennas \[3\]"):
        llrp_rospec.rf_plan(beyond, caps, [1, 2])
