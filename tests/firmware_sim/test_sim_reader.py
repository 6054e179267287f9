"""The reader simulator over real TCP: sllurp's own client, and a conformant client."""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter
from typing import Any

import pytest
from sllurp.llrp import LLRPReaderClient, LLRPReaderConfig, LLRPReaderState
from sllurp.llrp_proto import LLRPROSpec, decode_all_parameters

from edge.readers.llrp_codec import LlrpFramer, decode, encode
from edge.readers.llrp_rospec import TAG_REPORT_CONTENT
from firmware_sim.errors import ProbeError, SimConfigError
from firmware_sim.llrp_types import ContentSelector, MsgType, StatusCode
from firmware_sim.probe import LlrpProbe, Response, raw_request
from firmware_sim.reader import ReaderSimulator
from tests.firmware_sim.support import WAIT_S, epcs, shelf, until

PORTAL_SELECTOR = dict(TAG_REPORT_CONTENT)
"""What the edge asks a portal reader to report of each tag."""


def rospec_state(response: Response) -> list[tuple[int, int]]:
    """(ROSpecID, CurrentState) of each ROSpec in a GET_ROSPECS_RESPONSE."""
    params, _ = decode_all_parameters(response.raw[10:])
    specs = params.get("ROSpec")
    if specs is None:
        return []
    specs = specs if isinstance(specs, list) else [specs]
    return [(s["ROSpecID"], s["CurrentState"]) for s in specs]


# --- sllurp's own client ----------------------------------------------------------------


async def test_sllurps_client_gets_every_tag_of_a_population() -> None:
    population = epcs(40)
    async with ReaderSimulator(antennas=2, name="dock1", seed=1, field=shelf(population)) as sim:
        loop = asyncio.get_running_loop()
        received: list[tuple[str, int, int, int, int, int]] = []
        states: list[int] = []

        def on_tags(_: Any, tags: list[dict[str, Any]]) -> None:
            rows = [
                (
                    t["EPC"].decode(),
                    t["AntennaID"],
                    t["PeakRSSI"],
                    t["FirstSeenTimestampUTC"],
                    t["LastSeenTimestampUTC"],
                    t["TagSeenCount"],
                )
                for t in tags
            ]
            loop.call_soon_threadsafe(received.extend, rows)

        def on_inventorying(_: Any, state: int) -> None:
            loop.call_soon_threadsafe(states.append, state)

        config = LLRPReaderConfig(
            {
                "antennas": [1, 2],
                "keepalive_interval": 150,
                "tag_content_selector": PORTAL_SELECTOR,
            }
        )
        client = LLRPReaderClient("127.0.0.1", sim.port, config, timeout=5.0)
        client.add_tag_report_callback(on_tags)
        client.add_state_callback(LLRPReaderState.STATE_INVENTORYING, on_inventorying)
        await asyncio.to_thread(client.connect)
        try:
            await until(lambda: bool(states), "sllurp to reach INVENTORYING")
            wanted = {(e, a) for e in population for a in (1, 2)}
            await until(lambda: wanted <= {(r[0], r[1]) for r in received}, "every tag twice")
            await until(lambda: sim.stats().keepalive_acks >= 2, "sllurp's KEEPALIVE_ACKs")
        finally:
            await asyncio.to_thread(client.disconnect, 5.0)
            if client.is_alive():
                client.hard_disconnect()
        assert not client.is_alive()
        await until(lambda: not sim.connected, "the session to end")

    assert states == [LLRPReaderState.STATE_INVENTORYING]
    requests = sim.requests
    for request in (
        MsgType.GET_READER_CAPABILITIES,
        MsgType.GET_READER_CONFIG,
        MsgType.ENABLE_EVENTS_AND_REPORTS,
        MsgType.SET_READER_CONFIG,
        MsgType.DELETE_ACCESSSPEC,
        MsgType.DELETE_ROSPEC,
        MsgType.ADD_ROSPEC,
        MsgType.ENABLE_ROSPEC,
        MsgType.KEEPALIVE_ACK,
    ):
        assert requests[request] >= 1, request.name
    assert MsgType.START_ROSPEC not in requests
    # The client's own count matches what the simulator says it sent, read for read.
    counted: Counter[tuple[str, int]] = Counter()
    for epc, antenna, _, _, _, seen in received:
        counted[(epc, antenna)] += seen
    assert counted == sim.emitted
    now_us = time.time_ns() // 1000
    for _, _, rssi, first, last, seen in received:
        assert -65 <= rssi <= -45
        assert now_us - 60_000_000 < first <= last <= now_us
        assert seen >= 1


# --- a conformant client driving the reader with raw frames --------------------------------


async def test_start_rospec_get_rospecs_and_close_connection() -> None:
    population = epcs(10)
    async with (
        ReaderSimulator(antennas=4, name="r420", seed=2, field=shelf(population, 800)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        caps = await probe.request(
            encode({"GET_READER_CAPABILITIES": {"ID": 1, "RequestedData": 0}}),
            MsgType.GET_READER_CAPABILITIES_RESPONSE,
        )
        assert caps.msg_id == 1
        (frame,) = LlrpFramer().feed(caps.raw)
        general = decode(frame).body["GeneralDeviceCapabilities"]
        assert general["MaxNumberOfAntennaSupported"] == 4

        spec: dict[str, Any] = LLRPROSpec(
            None, 5, antennas=(1, 3), tag_content_selector=PORTAL_SELECTOR
        )
        spec["ROBoundarySpec"]["ROSpecStartTrigger"]["ROSpecStartTriggerType"] = "Null"
        added = await probe.request(
            encode({"ADD_ROSPEC": {"ID": 2, "ROSpec": spec}}), MsgType.ADD_ROSPEC_RESPONSE
        )
        assert (added.msg_id, added.status) == (2, StatusCode.SUCCESS)

        get_rospecs = raw_request(MsgType.GET_ROSPECS, 3)
        listed = await probe.request(get_rospecs, MsgType.GET_ROSPECS_RESPONSE)
        assert listed.status is StatusCode.SUCCESS
        assert rospec_state(listed) == [(5, 0)]  # Disabled

        refused = await probe.request(
            encode({"START_ROSPEC": {"ID": 4, "ROSpecID": 5}}), MsgType.START_ROSPEC_RESPONSE
        )
        assert refused.status is StatusCode.FIELD_ERROR  # not enabled yet

        enabled = await probe.request(
            encode({"ENABLE_ROSPEC": {"ID": 5, "ROSpecID": 5}}), MsgType.ENABLE_ROSPEC_RESPONSE
        )
        assert enabled.status is StatusCode.SUCCESS
        listed = await probe.request(raw_request(MsgType.GET_ROSPECS, 6), 36)
        assert rospec_state(listed) == [(5, 1)]  # Inactive: a Null trigger waits for START
        assert not sim.inventorying

        started = await probe.request(
            encode({"START_ROSPEC": {"ID": 7, "ROSpecID": 5}}), MsgType.START_ROSPEC_RESPONSE
        )
        assert (started.msg_id, started.status) == (7, StatusCode.SUCCESS)
        await until(lambda: {r.epc_hex for r in probe.reads} == set(population), "all tags")
        listed = await probe.request(raw_request(MsgType.GET_ROSPECS, 8), 36)
        assert rospec_state(listed) == [(5, 2)]  # Active
        assert {r.antenna for r in probe.reads} == {1, 3}

        stopped = await probe.request(
            encode({"STOP_ROSPEC": {"ID": 9, "ROSpecID": 5}}), MsgType.STOP_ROSPEC_RESPONSE
        )
        assert stopped.status is StatusCode.SUCCESS
        assert not sim.inventorying
        reads_at_stop = len(probe.reads)
        await asyncio.sleep(0.2)
        assert len(probe.reads) == reads_at_stop
        listed = await probe.request(raw_request(MsgType.GET_ROSPECS, 10), 36)
        assert rospec_state(listed) == [(5, 1)]

        closed = await probe.request(
            encode({"CLOSE_CONNECTION": {"ID": 11}}), MsgType.CLOSE_CONNECTION_RESPONSE
        )
        assert (closed.msg_id, closed.status) == (11, StatusCode.SUCCESS)
        await probe.wait_closed_by_reader()
        assert probe.counts() == sim.emitted


async def test_requests_a_reader_refuses_and_those_it_never_answers() -> None:
    async with (
        ReaderSimulator(antennas=2, name="r") as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        # Deletes of "all" succeed even when there is nothing to delete.
        await probe.call("DELETE_ACCESSSPEC", {"AccessSpecID": 0})
        await probe.call("DELETE_ROSPEC", {"ROSpecID": 0})
        missing = await probe.request(
            encode({"ENABLE_ROSPEC": {"ID": 3, "ROSpecID": 99}}), MsgType.ENABLE_ROSPEC_RESPONSE
        )
        assert missing.status is StatusCode.FIELD_ERROR
        assert "99" in missing.description
        # No response to ENABLE_EVENTS_AND_REPORTS: the next answer is GET_ROSPECS'.
        probe._send(encode({"ENABLE_EVENTS_AND_REPORTS": {"ID": 4}}))
        listed = await probe.request(raw_request(MsgType.GET_ROSPECS, 5), 36)
        assert (listed.msg_id, rospec_state(listed)) == (5, [])
        unknown = await probe.request(raw_request(999, 6), MsgType.ERROR_MESSAGE)
        assert (unknown.msg_id, unknown.status) == (6, StatusCode.UNSUPPORTED_MESSAGE)
        beyond = LLRPROSpec(None, 1, antennas=(3,))
        too_far = await probe.request(encode({"ADD_ROSPEC": {"ID": 7, "ROSpec": dict(beyond)}}), 30)
        assert too_far.status is StatusCode.FIELD_ERROR
        await probe.call("ADD_ROSPEC", {"ROSpec": dict(LLRPROSpec(None, 1, antennas=(1,)))})
        second = LLRPROSpec(None, 2, antennas=(1,))
        overflow = await probe.request(
            encode({"ADD_ROSPEC": {"ID": 8, "ROSpec": dict(second)}}), 30
        )
        assert overflow.status is StatusCode.OVERFLOW_PARAMETER  # an R420 holds one ROSpec
        impinj = await probe.request(
            encode({"IMPINJ_ENABLE_EXTENSIONS": {"ID": 9}}), MsgType.CUSTOM_MESSAGE
        )
        assert impinj.status is StatusCode.SUCCESS
        assert struct.unpack_from("!IB", impinj.raw, 10) == (25882, 22)
        assert sim.requests[MsgType.ENABLE_EVENTS_AND_REPORTS] == 1


async def test_a_broken_stream_gets_an_error_and_is_closed() -> None:
    async with ReaderSimulator(antennas=1, name="r") as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        try:
            framer = LlrpFramer()
            await reader.readexactly(32)  # the greeting
            version_2 = struct.pack("!HII", (2 << 10) | 1, 11, 1) + b"\x00"
            writer.write(version_2)
            await writer.drain()
            async with asyncio.timeout(WAIT_S):
                rest = await reader.read()  # until the reader hangs up
            (error,) = framer.feed(rest)
            assert error.msg_type == MsgType.ERROR_MESSAGE
            assert decode(error).body["LLRPStatus"]["StatusCode"] == "UnsupportedVersion"
        finally:
            writer.close()
            await writer.wait_closed()
        await until(lambda: not sim.connected, "the session to end")


async def test_a_second_client_is_refused_while_one_is_connected() -> None:
    async with ReaderSimulator(antennas=1, name="r") as sim:
        async with LlrpProbe("127.0.0.1", sim.port):
            with pytest.raises(ProbeError, match="Client initiated connection already exists"):
                async with LlrpProbe("127.0.0.1", sim.port):
                    pass
            assert sim.stats().refused == 1
        await until(lambda: not sim.connected, "the first session to end")
        async with LlrpProbe("127.0.0.1", sim.port) as again:
            await again.call("GET_READER_CAPABILITIES", {"RequestedData": 1})
        assert sim.stats().connections == 2


async def test_keepalives_come_at_the_requested_interval_and_are_acked() -> None:
    async with (
        ReaderSimulator(antennas=1, name="r") as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.call(
            "SET_READER_CONFIG",
            {"KeepaliveSpec": {"KeepaliveTriggerType": 1, "TimeInterval": 100}},
        )
        await until(lambda: sim.stats().keepalive_acks >= 3, "three acknowledged keepalives")
        await probe.call(
            "SET_READER_CONFIG",
            {"KeepaliveSpec": {"KeepaliveTriggerType": 0, "TimeInterval": 0}},
        )
        sent = sim.stats().keepalives_sent
        await asyncio.sleep(0.3)
        assert sim.stats().keepalives_sent == sent
        assert probe.keepalives == sent


async def test_reports_every_n_tags() -> None:
    async with (
        ReaderSimulator(antennas=2, name="r", seed=3, field=shelf(epcs(30), 1500)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        # A long AISpec, so only the N-tags trigger closes report windows.
        await probe.start_inventory(report_every_n_tags=5, aispec_duration_ms=60_000)
        await until(lambda: probe.reports >= 10, "ten reports")
        await probe.stop_inventory()
        assert set(probe.report_sizes[:-1]) == {5}
        assert 1 <= probe.report_sizes[-1] <= 5
        assert probe.counts() == sim.emitted


async def test_an_aispec_duration_paces_the_reports() -> None:
    async with (
        ReaderSimulator(antennas=1, name="r", seed=4, field=shelf(epcs(5), 400)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.start_inventory(aispec_duration_ms=300)
        await until(lambda: probe.reports >= 3, "three reports")
        await probe.stop_inventory()
        # Each 300 ms window holds all five tags, aggregated: one entry per tag.
        assert max(probe.report_sizes) <= 5
        assert probe.counts() == sim.emitted


async def test_a_rospec_with_a_duration_stops_by_itself() -> None:
    async with (
        ReaderSimulator(antennas=1, name="r", seed=5, field=shelf(epcs(3), 200)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        spec = LLRPROSpec(None, 1, antennas=(1,), duration_sec=0.3)
        await probe.call("ADD_ROSPEC", {"ROSpec": dict(spec)})
        await probe.call("ENABLE_ROSPEC", {"ROSpecID": 1})
        await until(lambda: sim.inventorying, "inventory to start")
        await until(lambda: not sim.inventorying, "the ROSpec's duration to end it")
        listed = await probe.request(raw_request(MsgType.GET_ROSPECS, 50), 36)
        assert rospec_state(listed) == [(1, 1)]
        await until(lambda: probe.counts() == sim.emitted, "the last report")
        assert probe.reads


async def test_unplugging_an_antenna_is_announced_and_silences_it() -> None:
    async with (
        ReaderSimulator(antennas=2, name="r", seed=6, field=shelf(epcs(4), 800)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.start_inventory(selector=ContentSelector())
        await until(lambda: {r.antenna for r in probe.reads} == {1, 2}, "both antennas")
        sim.set_antenna_connected(2, False)
        await until(lambda: bool(probe.events), "an AntennaEvent")
        event = decode(probe.events[-1]).body["ReaderEventNotificationData"]["AntennaEvent"]
        assert event == {"AntennaID": 2, "EventType": "Disconnected"}
        await asyncio.sleep(0.2)  # reports already under way may still carry antenna 2
        mark = len(probe.reads)
        await until(lambda: len(probe.reads) > mark + 10, "more reads")
        assert {r.antenna for r in probe.reads[mark:]} == {1}
        config = await probe.call("GET_READER_CONFIG", {"RequestedData": 0})
        (frame,) = LlrpFramer().feed(config.raw)
        properties = decode(frame).body["AntennaProperties"]
        assert [p["AntennaConnected"] for p in properties] == [True, False]
        sim.set_antenna_connected(2, True)
        await until(lambda: len(probe.events) == 2, "the reconnect event")
        await probe.stop_inventory()
        assert probe.counts() == sim.emitted
    with pytest.raises(SimConfigError):
        sim.set_antenna_connected(3, False)


async def test_several_readers_in_one_process() -> None:
    first, second = epcs(12), epcs(7, base=1000)
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=7, field=shelf(first, 1000)) as sim1,
        ReaderSimulator(antennas=4, name="dock2", seed=8, field=shelf(second, 1000)) as sim2,
        LlrpProbe("127.0.0.1", sim1.port) as probe1,
        LlrpProbe("127.0.0.1", sim2.port) as probe2,
    ):
        assert sim1.port != sim2.port
        await asyncio.gather(probe1.start_inventory(), probe2.start_inventory())
        await until(
            lambda: (
                {r.epc_hex for r in probe1.reads} == set(first)
                and {r.epc_hex for r in probe2.reads} == set(second)
            ),
            "both populations",
        )
        await asyncio.gather(probe1.stop_inventory(), probe2.stop_inventory())
        assert {r.antenna for r in probe2.reads} == {1, 2, 3, 4}
        assert probe1.counts() == sim1.emitted
        assert probe2.counts() == sim2.emitted
        assert sim1.mac != sim2.mac


@pytest.mark.parametrize(
    "kwargs",
    [{"antennas": 0}, {"antennas": 9}, {"port": 70000}, {"round_s": 0}, {"name": ""}],
)
def test_impossible_simulators_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SimConfigError):
        ReaderSimulator(**kwargs)


def test_port_before_serving_is_an_error() -> None:
    with pytest.raises(SimConfigError, match="not serving"):
        _ = ReaderSimulator().port


async def test_two_readers_in_one_process_each_sustain_2000_reads_per_second() -> None:
    # A capability check with a generous floor, not a benchmark: each reader is asked for
    # 3,000 reads/s of a large population; a client must decode >= 2,000/s from each.
    window_s = 2.0
    async with (
        ReaderSimulator(antennas=4, name="a", seed=21, field=shelf(epcs(5000), 3000)) as sim1,
        ReaderSimulator(
            antennas=4, name="b", seed=22, field=shelf(epcs(5000, 10**6), 3000)
        ) as sim2,
        LlrpProbe("127.0.0.1", sim1.port) as probe1,
        LlrpProbe("127.0.0.1", sim2.port) as probe2,
    ):
        await asyncio.gather(probe1.start_inventory(), probe2.start_inventory())
        await until(lambda: probe1.reports > 2 and probe2.reports > 2, "both readers reporting")
        before = [sum(p.counts().values()) for p in (probe1, probe2)]
        await asyncio.sleep(window_s)
        after = [sum(p.counts().values()) for p in (probe1, probe2)]
        await asyncio.gather(probe1.stop_inventory(), probe2.stop_inventory())
    for start, end in zip(before, after, strict=True):
        assert (end - start) / window_s >= 2000
    assert probe1.counts() == sim1.emitted
    assert probe2.counts() == sim2.emitted
