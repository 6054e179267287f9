"""Every reader fault, and what the edge's real LLRP client does about it (real TCP)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edge.readers.llrp import LlrpReader
from edge.readers.types import GpiChanged, ReaderEvent, TagRead
from firmware_sim.errors import SimConfigError
from firmware_sim.faults import FaultKind, Scope, make_fault, parse_fault_arg
from firmware_sim.portal_door import Direction, DockDoor
from firmware_sim.portal_motion import PalletPass
from firmware_sim.reader import ReaderSimulator
from firmware_sim.replay import load_reports
from tests.firmware_sim.support import Seen, edge_on, epcs, settings, shelf, until

TAGS = epcs(8)
CAPTURES = Path(__file__).resolve().parents[1] / "data" / "llrp-captures.json"


def reads_after(seen: Seen, t: float) -> int:
    return len(seen.reads(after=t))


async def connected_with_reads(seen: Seen, times: int = 1) -> None:
    await until(lambda: seen.count("connected") >= times, f"connection {times}")
    mark = seen.when("connected", times)
    await until(lambda: reads_after(seen, mark) >= 5, f"reads on connection {times}")


def no_errors_but(seen: Seen, *expected: str) -> None:
    errors = [d for s, d in seen.states() if s == "error"]
    assert all(any(e in d for e in expected) for d in errors), errors


# --- the fault table and its parsers ------------------------------------------------------


def test_every_fault_kind_has_a_spec_and_defaults() -> None:
    for kind in FaultKind:
        fault = make_fault(kind.value)
        assert fault.kind is kind
        assert isinstance(fault.scope, Scope)
    assert make_fault("slow", duration_s="1.5").float_("duration_s") == 1.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("melt", "unknown fault 'melt'"),
        ("garbage,size=0", "size = 0 outside 1..65536"),
        ("garbage,colour=red", "unknown parameter 'colour'"),
        ("garbage,size", "not NAME=VALUE"),
        ("slow,duration_s=fast", "must be a float"),
        ("refuse_connection,status=maybe", "must be one of"),
        ("reboot@soon", "not a number of seconds"),
        ("reboot@-1", "outside 0"),
        ("stop_keepalives,reports=perhaps", "true or false"),
    ],
)
def test_bad_faults_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(SimConfigError, match=message):
        parse_fault_arg(text)


def test_fault_arguments() -> None:
    scheduled = parse_fault_arg("garbage,size=16,framed=true@2.5")
    assert scheduled.at_s == 2.5
    assert scheduled.fault.params == {"size": 16, "framed": True}
    assert parse_fault_arg("reboot").at_s is None


# --- each fault against the edge ----------------------------------------------------------


async def test_drop_mid_message_the_edge_reconnects_and_reads_again() -> None:
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=1, field=shelf(TAGS, 600)) as sim,
        edge_on(sim) as seen,
    ):
        await connected_with_reads(seen)
        sim.inject("drop_mid_message")
        await until(lambda: seen.count("disconnected") >= 1, "the edge to see the drop")
        await connected_with_reads(seen, 2)
    assert sim.stats().connections == 2
    assert not seen.events("decode_error")  # no half message glued to the next one
    assert {r.epc_hex for r in seen.reads(after=seen.when("connected", 2))} <= set(TAGS)
    dropped = next(d for s, d in seen.states() if s == "disconnected")
    assert "closed the connection" in dropped or "connection lost" in dropped


async def test_silent_reader_the_keepalive_watchdog_reconnects() -> None:
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=2, field=shelf(TAGS, 600)) as sim,
        edge_on(sim) as seen,
    ):
        await connected_with_reads(seen)
        sim.inject("stop_keepalives")
        await until(lambda: seen.count("error") >= 1, "the watchdog")
        await connected_with_reads(seen, 2)
    (error,) = [d for s, d in seen.states() if s == "error"]
    assert "keepalive watchdog" in error
    assert sim.stats().connections == 2


async def test_reports_without_keepalives_keep_the_link_alive() -> None:
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=3, field=shelf(TAGS, 600)) as sim,
        edge_on(sim) as seen,
    ):
        await connected_with_reads(seen)
        sent = sim.stats().keepalives_sent
        sim.inject("stop_keepalives", reports=True)
        mark = time.monotonic()
        await asyncio.sleep(1.8)  # more than the watchdog's 3 x 0.5 s
        assert sim.stats().keepalives_sent <= sent + 1
        # Reads still come past the watchdog's window (on a loaded machine they may reach
        # the edge a little later than they were sent: wait for them, bounded).
        await until(lambda: reads_after(seen, mark + 1.5) > 0, "reads past the watchdog window")
    assert seen.count("connected") == 1
    assert seen.count("error") == 0


async def test_refused_attempts_back_off_then_connect() -> None:
    async with ReaderSimulator(antennas=2, name="dock1", seed=4, field=shelf(TAGS, 600)) as sim:
        sim.inject("refuse_connection", count=2)
        async with edge_on(sim) as seen:
            await connected_with_reads(seen)
    errors = [d for s, d in seen.states() if s == "error"]
    assert len(errors) == 2
    assert all("refused the connection" in e for e in errors)
    assert sim.stats().refused == 2
    assert seen.states()[-1][0] == "disconnected"  # stopped


async def test_no_rf_mode_table_the_edge_tolerates_it() -> None:
    async with ReaderSimulator(antennas=2, name="dock1", seed=5, field=shelf(TAGS, 300)) as sim:
        sim.inject("no_rf_mode_table")
        reader = LlrpReader(settings(sim.port))
        states: list[str | None] = []
        async with reader:
            async with asyncio.timeout(5):
                async for item in reader:
                    if isinstance(item, ReaderEvent) and item.kind == "state":
                        states.append(item.state)
                    if isinstance(item, TagRead):
                        break
            assert reader.capabilities is not None
            assert reader.capabilities.rf_modes == 0  # it was left out
            assert reader.capabilities.power_levels > 0
    assert states == ["connecting", "connected"]
    assert sim.stats().connections == 1


async def test_fewer_antennas_than_configured_is_a_clear_error() -> None:
    async with ReaderSimulator(antennas=2, name="dock1", seed=6, field=shelf(TAGS, 600)) as sim:
        sim.inject("fewer_antennas", antennas=1)
        async with edge_on(sim, antennas=[1, 2]) as seen:
            await until(lambda: seen.count("error") >= 1, "the antenna error")
            await connected_with_reads(seen)  # the next connection advertises both
            await until(lambda: {r.antenna for r in seen.reads()} == {1, 2}, "both antennas")
    (error,) = [d for s, d in seen.states() if s == "error"]
    assert "configured antennas [2]" in error
    assert "1 antennas" in error


async def test_error_message_in_the_handshake_is_an_error_then_a_retry() -> None:
    async with ReaderSimulator(antennas=2, name="dock1", seed=7, field=shelf(TAGS, 600)) as sim:
        sim.inject("error_in_handshake", request="SET_READER_CONFIG")
        async with edge_on(sim) as seen:
            await connected_with_reads(seen)
    (error,) = [d for s, d in seen.states() if s == "error"]
    assert "ERROR_MESSAGE in reply to SET_READER_CONFIG" in error
    assert "reader is busy" in error
    assert sim.stats().connections == 2


async def test_an_empty_report_before_inventory_yields_nothing() -> None:
    async with ReaderSimulator(antennas=2, name="dock1", seed=8, field=shelf(TAGS, 600)) as sim:
        sim.inject("empty_report", count=0)  # every connection, as a Zebra does
        async with edge_on(sim) as seen:
            await connected_with_reads(seen)
    assert sim.stats().empty_reports == 1
    assert not seen.events("decode_error")
    assert not seen.events("exception")
    assert seen.count("error") == 0
    assert seen.counts() == sim.emitted  # the empty report added no read


async def test_a_slow_reader_loses_nothing() -> None:
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=9, field=shelf(TAGS, 800)) as sim,
        edge_on(sim) as seen,
    ):
        await connected_with_reads(seen)
        mark = time.monotonic()
        sim.inject("slow", duration_s=1.2, rate_bps=4000)
        await asyncio.sleep(1.2)
        during = reads_after(seen, mark)
        await until(lambda: reads_after(seen, mark) > during + 20, "the backlog")
    assert during > 0  # reads trickled in while it was slow
    assert seen.count("connected") == 1
    assert seen.count("error") == 0
    assert seen.counts() == sim.emitted  # every read the reader sent arrived


async def test_garbage_bytes_are_a_framing_error_then_a_reconnect() -> None:
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=10, field=shelf(TAGS, 600)) as sim,
        edge_on(sim) as seen,
    ):
        await connected_with_reads(seen)
        sim.inject("garbage", size=200)
        await until(lambda: seen.count("error") >= 1, "the framing error")
        await connected_with_reads(seen, 2)
    (error,) = [d for s, d in seen.states() if s == "error"]
    assert "LLRP version 7" in error


async def test_an_undecodable_message_is_a_decode_error_and_reads_go_on() -> None:
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=11, field=shelf(TAGS, 600)) as sim,
        edge_on(sim) as seen,
    ):
        await connected_with_reads(seen)
        sim.inject("garbage", framed=True, size=40)
        await until(lambda: bool(seen.events("decode_error")), "a decode error")
        mark = time.monotonic()
        await until(lambda: reads_after(seen, mark) >= 5, "reads after it")
    (problem,) = seen.events("decode_error")
    assert "message type 61" in problem.detail
    assert seen.count("connected") == 1
    assert seen.count("error") == 0


async def test_a_reboot_the_edge_comes_back_after_the_delay() -> None:
    delay = 0.8
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=12, field=shelf(TAGS, 600)) as sim,
        edge_on(sim) as seen,
    ):
        await connected_with_reads(seen)
        sim.inject("reboot", delay_s=delay)
        await until(lambda: seen.count("disconnected") >= 1, "the reboot")
        down = seen.when("disconnected")
        await connected_with_reads(seen, 2)
    refused = [d for s, d in seen.states() if s == "error"]
    assert refused
    assert all("cannot connect" in d for d in refused)
    assert seen.when("connected", 2) - down >= delay - 0.1  # not before the reader is back
    assert sim.stats().connections == 2


async def test_a_session_fault_waits_for_the_next_session() -> None:
    async with ReaderSimulator(antennas=2, name="dock1", seed=13, field=shelf(TAGS, 600)) as sim:
        sim.inject("drop_mid_message")  # nobody connected yet
        async with edge_on(sim) as seen:
            await connected_with_reads(seen, 2)
    assert seen.count("disconnected") >= 1


# --- GPIO and replay with the edge ----------------------------------------------------------


async def test_the_edge_sees_the_photo_eye_and_lights_are_recorded() -> None:
    door = DockDoor(photo_eye_gpi=1)
    async with ReaderSimulator(antennas=2, name="dock1", seed=14) as sim:
        reader = LlrpReader(settings(sim.port), gpi_ports=[1])
        gpi: list[GpiChanged] = []
        async with reader:
            async with asyncio.timeout(10):
                async for item in reader:
                    if isinstance(item, ReaderEvent) and item.state == "connected":
                        break
                pallet = PalletPass(
                    door, epcs(3), start=sim.now() + 0.05, direction=Direction.IN, speed_mps=3
                )
                sim.field.add(pallet)
                async for item in reader:
                    if isinstance(item, GpiChanged):
                        gpi.append(item)
                        if len(gpi) == 2:
                            break
            assert await reader.write_gpo([(2, True), (3, False)])
            await until(lambda: len(sim.gpo_writes) == 2, "the light stack's writes")
    assert [(e.port, e.high) for e in gpi] == [(1, True), (1, False)]
    assert [(port, high) for _, port, high in sim.gpo_writes] == [(2, True), (3, False)]


async def test_replayed_captures_reach_the_edge() -> None:
    frames = load_reports(CAPTURES)
    async with ReaderSimulator(antennas=4, name="dock1") as sim:
        sim.replay(frames, interval_s=0.005)
        async with edge_on(sim) as seen:
            await until(lambda: sim.stats().reports_sent == len(frames), "the whole replay")
            await until(lambda: seen.counts() == sim.emitted, "every replayed read")
    assert {epc for epc, _ in sim.emitted} == {r.epc_hex for r in seen.reads()}
    assert 0 in {r.antenna for r in seen.reads()}  # the Zebra report carries no antenna
