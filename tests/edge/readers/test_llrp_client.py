"""LlrpReader against the scripted fake reader, over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

from edge.config import LlrpSettings
from edge.readers.llrp import LlrpReader
from edge.readers.types import (
    AntennaChanged,
    ReaderEvent,
    ReaderFault,
    ReaderOutput,
    StateChanged,
    TagRead,
)
from firmware_sim.fake_reader import FakeLlrpReader, FakeTag, request_params, ro_access_report
from firmware_sim.llrp_encode import (
    antenna_event,
    encode_keepalive,
    llrp_status,
    message,
    reader_exception_event,
)
from firmware_sim.llrp_types import ConnectionAttempt, MsgType, Status, StatusCode

HANDSHAKE = [
    MsgType.GET_READER_CAPABILITIES,
    # The fake says it is an Impinj: the extensions are asked for, refused (the fake has
    # no custom messages, like older firmware), and the reader runs on standard fields.
    MsgType.CUSTOM_MESSAGE,
    MsgType.GET_READER_CONFIG,
    MsgType.SET_READER_CONFIG,
    MsgType.ENABLE_EVENTS_AND_REPORTS,
    MsgType.DELETE_ACCESSSPEC,
    MsgType.DELETE_ROSPEC,
    MsgType.ADD_ROSPEC,
    MsgType.ENABLE_ROSPEC,
]
EPC_A = "3000abcdef00000000000003"
EPC_B = "e2801160600002054cd4a36b00001234"  # 128 bits: sent as EPCData


def settings(port: int, **values: Any) -> LlrpSettings:
    base: dict[str, Any] = {
        "name": "dock1",
        "host": "127.0.0.1",
        "port": port,
        "keepalive_s": 0.5,
        "connect_timeout_s": 2.0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    return LlrpSettings(**(base | values))


async def next_matching(
    reader: LlrpReader, predicate: Callable[[ReaderOutput], bool], timeout: float = 5.0
) -> ReaderOutput:
    """The next output that matches, skipping others (bounded in count and time)."""
    async with asyncio.timeout(timeout):
        for _ in range(10_000):
            item = await anext(reader)
            if predicate(item):
                return item
    raise AssertionError("no matching reader output")


def state(name: str, contains: str = "") -> Callable[[ReaderOutput], bool]:
    def match(item: ReaderOutput) -> bool:
        return (
            isinstance(item, ReaderEvent)
            and item.kind == "state"
            and item.state == name
            and contains in item.detail
        )

    return match


def kind(name: str) -> Callable[[ReaderOutput], bool]:
    return lambda item: isinstance(item, ReaderEvent) and item.kind == name


def is_read(item: ReaderOutput) -> bool:
    return isinstance(item, TagRead)


async def test_handshake_sends_our_rospec_and_config() -> None:
    async with FakeLlrpReader(max_antennas=4) as fake, LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("connected"))
        ack = MsgType.KEEPALIVE_ACK
        sent = [r.frame.msg_type for r in fake.received if r.frame.msg_type != ack]
        assert sent == HANDSHAKE
        assert reader.status().state == "connected"
        assert reader.status().kind == "llrp"
        assert reader.capabilities is not None
        assert reader.capabilities.max_antennas == 4

        (add,) = fake.requests(MsgType.ADD_ROSPEC)
        spec = request_params(add)["ROSpec"]
        selector = spec["ROReportSpec"]["TagReportContentSelector"]
        for flag in (
            "EnableAntennaID",
            "EnablePeakRSSI",
            "EnableFirstSeenTimestamp",
            "EnableLastSeenTimestamp",
            "EnableTagSeenCount",
        ):
            assert selector[flag] is True, flag
        assert "ImpinjTagReportContentSelector" not in spec["ROReportSpec"]
        assert spec["ROReportSpec"]["ROReportTrigger"] == "Upon_N_Tags_Or_End_Of_AISpec"
        assert spec["ROReportSpec"]["N"] == 0
        assert spec["ROBoundarySpec"]["ROSpecStartTrigger"]["ROSpecStartTriggerType"] == 1
        (aispec,) = spec["AISpec"]
        assert aispec["AntennaID"] == [1, 2, 3, 4]  # none configured: all the reader has
        assert aispec["AISpecStopTrigger"] == {
            "AISpecStopTriggerType": 1,  # Duration
            "DurationTriggerValue": 200,
        }

        (config,) = fake.requests(MsgType.SET_READER_CONFIG)
        params = request_params(config)
        assert params["KeepaliveSpec"]["TimeInterval"] == 500
        assert params["KeepaliveSpec"]["KeepaliveTriggerType"] == "Immediate"  # = periodic
        events = {
            s["EventType"]: s["NotificationState"]
            for s in params["ReaderEventNotificationSpec"]["EventNotificationState"]
        }
        assert events["AntennaEvent"] is True
        assert events["ReaderExceptionEvent"] is True

        for msg_type in (MsgType.DELETE_ACCESSSPEC, MsgType.DELETE_ROSPEC):
            (delete,) = fake.requests(msg_type)
            assert struct.unpack_from("!I", delete.raw, 10) == (0,)


async def test_configured_antennas_and_report_every_n_tags() -> None:
    async with FakeLlrpReader(max_antennas=4) as fake:
        config = settings(fake.port, antennas=[3, 1], report_every_n_tags=25, report_timeout_ms=0)
        async with LlrpReader(config) as reader:
            await next_matching(reader, state("connected"))
        spec = request_params(fake.requests(MsgType.ADD_ROSPEC)[0])["ROSpec"]
        assert spec["AISpec"][0]["AntennaID"] == [1, 3]
        assert spec["AISpec"][0]["AISpecStopTrigger"]["AISpecStopTriggerType"] == 0  # Null
        assert spec["ROReportSpec"]["N"] == 25


async def test_antenna_beyond_the_reader_is_an_error_and_nothing_is_added() -> None:
    async with FakeLlrpReader(max_antennas=2) as fake:
        config = settings(fake.port, antennas=[1, 5])
        async with LlrpReader(config) as reader:
            error = await next_matching(reader, state("error", "[5]"))
            assert isinstance(error, ReaderEvent)
            assert "2 antennas" in error.detail
            await fake.wait_connections(2)  # it keeps trying
            status = reader.status()
            assert status.state in ("connecting", "error")
            assert status.last_error is not None
            assert "[5]" in status.last_error
        assert fake.requests(MsgType.ADD_ROSPEC) == []


async def test_tag_reports_become_tag_reads() -> None:
    async with FakeLlrpReader() as fake, LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("connected"))
        await fake.send_report(
            [
                FakeTag(EPC_A, antenna=2, rssi=-48, first_seen_us=1_000, last_seen_us=2_500,
                        seen_count=7),
                FakeTag(EPC_B.upper(), antenna=None, rssi=None, first_seen_us=None,
                        last_seen_us=9_000, seen_count=None),
            ]
        )  # fmt: skip
        await fake.send_report([])  # an empty report (Zebra sends one) is fine
        first = await next_matching(reader, is_read)
        second = await next_matching(reader, is_read)
        assert first == TagRead("dock1", EPC_A, 2, -48.0, 1_000, 2_500, 7)
        assert second == TagRead("dock1", EPC_B, 0, None, 9_000, 9_000, 1)


async def test_reads_without_timestamps_get_the_receive_time() -> None:
    async with FakeLlrpReader() as fake, LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("connected"))
        before_us = time.time_ns() // 1000
        await fake.send_report([FakeTag(EPC_A)])
        read = await next_matching(reader, is_read)
        after_us = time.time_ns() // 1000
        assert isinstance(read, TagRead)
        assert read.first_seen_us == read.last_seen_us
        assert before_us <= read.first_seen_us <= after_us


async def test_reconnects_after_a_drop_mid_message_with_fresh_framing() -> None:
    async with FakeLlrpReader() as fake, LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("connected"))
        report = ro_access_report([FakeTag(EPC_A)])
        await fake.drop(partial=report[: len(report) // 2])
        await next_matching(reader, state("disconnected"))
        await next_matching(reader, state("connected"))
        assert fake.connections == 2
        assert [r.frame.msg_type for r in fake.received if r.connection == 2][
            : len(HANDSHAKE)
        ] == HANDSHAKE
        await fake.send_report([FakeTag(EPC_B)])
        read = await next_matching(reader, is_read)
        assert isinstance(read, TagRead)
        assert read.epc_hex == EPC_B


async def test_keepalives_are_acknowledged() -> None:
    async with FakeLlrpReader() as fake, LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("connected"))
        keepalive_id = await fake.send_keepalive()
        await fake.wait_until(
            lambda: keepalive_id in {a.msg_id for a in fake.requests(MsgType.KEEPALIVE_ACK)}
        )
        assert all(a.raw[10:] == b"" for a in fake.requests(MsgType.KEEPALIVE_ACK))
        # The periodic ones the fake sends at the requested 0.5 s are answered too.
        await fake.wait_requests(MsgType.KEEPALIVE_ACK, 3)


async def test_watchdog_reconnects_a_reader_that_goes_silent() -> None:
    async with FakeLlrpReader() as fake, LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("connected"))
        fake.silence()  # no keepalives, nothing at all; TCP stays open
        error = await next_matching(reader, state("error", "watchdog"))
        assert isinstance(error, ReaderEvent)
        assert "1.5 s" in error.detail  # three keepalive intervals
        await next_matching(reader, state("connected"))
        assert fake.connections == 2
        await fake.send_report([FakeTag(EPC_A)])
        assert isinstance(await next_matching(reader, is_read), TagRead)


async def test_undecodable_frames_are_reported_and_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.readers.llrp")
    async with FakeLlrpReader() as fake, LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("connected"))
        # GET_ROSPECS_RESPONSE (sllurp has no decoder), an unknown type, a broken report.
        await fake.send(message(36, 7, llrp_status()))
        await fake.send(message(900, 8, b"xyz"))
        await fake.send(message(MsgType.RO_ACCESS_REPORT, 9, struct.pack("!HH", 240, 100)))
        await fake.send_report([FakeTag(EPC_A)])
        errors = [await next_matching(reader, kind("decode_error")) for _ in range(3)]
        details = [e.detail for e in errors if isinstance(e, ReaderEvent)]
        assert [d.split(",")[0] for d in details] == [
            "message type 36",
            "message type 900",
            "message type 61",
        ]
        assert "1 of 1 TagReportData entries carry no EPC" in details[2]
        read = await next_matching(reader, is_read)
        assert isinstance(read, TagRead)
        assert read.epc_hex == EPC_A
        assert fake.connections == 1
        assert reader.status().state == "connected"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("type 900" in r.getMessage() and "13 bytes" in r.getMessage() for r in warnings)
    assert all(getattr(r, "reader", None) == "dock1" for r in caplog.records)
    assert all(r.getMessage().startswith("reader dock1: ") for r in caplog.records)


async def test_framing_error_drops_the_connection_and_reconnects() -> None:
    async with FakeLlrpReader() as fake, LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("connected"))
        bad_version = struct.pack("!HII", (2 << 10) | MsgType.KEEPALIVE, 10, 1)
        await fake.send(encode_keepalive(5) + bad_version)
        await next_matching(reader, state("error", "version"))
        await next_matching(reader, state("connected"))
        assert fake.connections == 2
        # The good KEEPALIVE before the bad header was still answered.
        assert [a.msg_id for a in fake.requests(MsgType.KEEPALIVE_ACK, connection=1)][:1] == [5]


async def test_connection_refused_then_reader_comes_back() -> None:
    fake = FakeLlrpReader()
    await fake.start()
    await fake.stop()  # the port is known but nobody listens
    try:
        async with LlrpReader(settings(fake.port)) as reader:
            for _ in range(2):  # keeps trying
                await next_matching(reader, state("error", "cannot connect"))
            await fake.start()
            await next_matching(reader, state("connected"))
            assert reader.status().last_error is not None
    finally:
        await fake.stop()


async def test_refused_connection_attempt_backs_off_then_succeeds() -> None:
    async with FakeLlrpReader() as fake:
        fake.connection_status = ConnectionAttempt.CLIENT_INITIATED_EXISTS
        async with LlrpReader(settings(fake.port)) as reader:
            error = await next_matching(reader, state("error", "refused the connection"))
            assert isinstance(error, ReaderEvent)
            assert "Client initiated connection already exists" in error.detail
            fake.connection_status = ConnectionAttempt.SUCCESS
            await next_matching(reader, state("connected"))
        assert len(fake.requests(MsgType.ADD_ROSPEC)) == 1


async def test_non_success_status_names_message_and_status() -> None:
    async with FakeLlrpReader() as fake:
        fake.statuses[MsgType.ADD_ROSPEC] = Status(StatusCode.FIELD_ERROR, "ROSpecID in use")
        async with LlrpReader(settings(fake.port)) as reader:
            error = await next_matching(reader, state("error", "ADD_ROSPEC_RESPONSE"))
            assert isinstance(error, ReaderEvent)
            assert "FieldError" in error.detail
            assert "ROSpecID in use" in error.detail
            assert fake.requests(MsgType.ENABLE_ROSPEC) == []
            del fake.statuses[MsgType.ADD_ROSPEC]
            await next_matching(reader, state("connected"))
            assert "ROSpecID in use" in (reader.status().last_error or "")


async def test_reader_events_are_passed_on() -> None:
    async with FakeLlrpReader() as fake, LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("connected"))
        await fake.send_event(antenna_event(3, connected=False))
        await fake.send_event(reader_exception_event("antenna 3 VSWR too high"))
        antenna = await next_matching(reader, kind("antenna"))
        exception = await next_matching(reader, kind("exception"))
        assert antenna == AntennaChanged(
            "dock1", 3, connected=False, detail="antenna 3 disconnected"
        )
        assert isinstance(exception, ReaderFault)
        assert exception.detail == "antenna 3 VSWR too high"


async def test_full_queue_applies_back_pressure_and_drops_nothing() -> None:
    epcs = [f"3000{n:020x}" for n in range(60)]
    async with (
        FakeLlrpReader() as fake,
        LlrpReader(settings(fake.port), queue_size=4) as reader,
    ):
        await next_matching(reader, state("connected"))
        for start in range(0, 60, 20):
            await fake.send_report([FakeTag(e) for e in epcs[start : start + 20]])
        await asyncio.sleep(0.2)  # let the read loop hit the full queue
        reads = [await next_matching(reader, is_read) for _ in range(60)]
        assert [r.epc_hex for r in reads if isinstance(r, TagRead)] == epcs


async def test_stop_deletes_the_rospec_and_closes() -> None:
    async with FakeLlrpReader() as fake:
        async with LlrpReader(settings(fake.port)) as reader:
            await next_matching(reader, state("connected"))
        assert len(fake.requests(MsgType.DELETE_ROSPEC, connection=1)) == 2
        await fake.wait_disconnected()
        assert reader.status().state == "disconnected"
        async with asyncio.timeout(5):
            leftovers = [item async for item in reader]  # iteration ends after a stop
        assert leftovers[-1] == StateChanged("dock1", "disconnected", detail="stopped")


async def test_stop_while_the_reader_is_unreachable() -> None:
    fake = FakeLlrpReader()
    await fake.start()
    await fake.stop()
    async with asyncio.timeout(5), LlrpReader(settings(fake.port)) as reader:
        await next_matching(reader, state("error"))
    assert reader.status().state == "disconnected"
