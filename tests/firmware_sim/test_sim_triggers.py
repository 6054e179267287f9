"""ROSpec/AISpec triggers, report triggers, reader events, GPI/GPO and replay, over TCP."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import pytest

from edge.readers.llrp_codec import LlrpFramer, decode
from firmware_sim.llrp_params import RequestError
from firmware_sim.llrp_requests import AddRoSpec, parse_request
from firmware_sim.llrp_triggers import (
    AiSpecStop,
    AiStopSpec,
    GpiTrigger,
    ObservationKind,
    Periodic,
    RoSpecStop,
    StartSpec,
    StartTrigger,
    StopSpec,
    TagObservation,
)
from firmware_sim.llrp_types import ContentSelector, MsgType, ReportSpec, ReportTrigger, StatusCode
from firmware_sim.portal_door import Direction, DockDoor
from firmware_sim.portal_motion import PalletPass
from firmware_sim.probe import LlrpProbe, gpo_write_config, raw_request, rospec_param
from firmware_sim.reader import GPI_POLL_S, ReaderSimulator
from firmware_sim.replay import load_reports
from tests.firmware_sim.support import epcs, shelf, until

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "llrp-captures.json"
EVERY_TAG = ReportSpec(ReportTrigger.N_TAGS_OR_END_OF_AISPEC, 0, ContentSelector())


def add_request(param: bytes) -> AddRoSpec:
    (frame,) = LlrpFramer().feed(raw_request(MsgType.ADD_ROSPEC, 1, param))
    request = parse_request(frame)
    assert isinstance(request, AddRoSpec)
    return request


def kinds(probe: LlrpProbe, name: str) -> list[Any]:
    """The ``name`` events the probe got, each as sllurp decodes it."""
    return [data[name] for data in probe.event_data() if name in data]


def rospec_events(probe: LlrpProbe) -> list[str]:
    return [event["EventType"] for event in kinds(probe, "ROSpecEvent")]


# --- parsing: GPI at LLRP's number (181) and at sllurp's (180) -------------------------------


@pytest.mark.parametrize("param_type", [181, 180])
def test_gpi_triggers_are_read_at_either_number(param_type: int) -> None:
    param = rospec_param(
        3,
        start=StartSpec(StartTrigger.GPI, gpi=GpiTrigger(2, True, 0)),
        stop=StopSpec(RoSpecStop.GPI_WITH_TIMEOUT, gpi=GpiTrigger(2, False, 1500)),
        aispecs=(((1,), AiStopSpec(AiSpecStop.GPI_WITH_TIMEOUT, gpi=GpiTrigger(3, True, 250))),),
        gpi_param_type=param_type,
    )
    spec = add_request(param).rospec
    assert spec.start == StartSpec(StartTrigger.GPI, gpi=GpiTrigger(2, True, 0))
    assert spec.stop == StopSpec(RoSpecStop.GPI_WITH_TIMEOUT, 0, GpiTrigger(2, False, 1500))
    assert spec.aispecs[0].stop.gpi == GpiTrigger(3, True, 250)
    assert spec.stop_duration_ms is None


def test_periodic_start_trigger_with_a_utc_start() -> None:
    periodic = Periodic(offset_ms=500, period_ms=2000, utc_start_us=1_700_000_000_000_000)
    spec = add_request(rospec_param(start=StartSpec(StartTrigger.PERIODIC, periodic))).rospec
    assert spec.start.periodic == periodic
    assert spec.start_trigger is StartTrigger.PERIODIC


@pytest.mark.parametrize("kind", list(ObservationKind))
def test_every_tag_observation_kind_is_read(kind: ObservationKind) -> None:
    observation = TagObservation(kind, n_tags=7, n_attempts=3, t_ms=40, timeout_ms=900)
    stop = AiStopSpec(AiSpecStop.TAG_OBSERVATION, observation=observation)
    spec = add_request(rospec_param(aispecs=(((1, 2), stop),))).rospec
    assert spec.aispecs[0].stop.observation == observation
    assert spec.aispec_tag_count == 7
    assert spec.aispec_duration_ms == 900


@pytest.mark.parametrize(
    ("param", "text"),
    [
        (rospec_param(start=StartSpec(StartTrigger.PERIODIC)), "PeriodicTriggerValue"),
        (rospec_param(start=StartSpec(StartTrigger.GPI)), "GPITriggerValue"),
        (rospec_param(stop=StopSpec(RoSpecStop.GPI_WITH_TIMEOUT)), "GPITriggerValue"),
        (
            rospec_param(aispecs=(((1,), AiStopSpec(AiSpecStop.TAG_OBSERVATION)),)),
            "TagObservationTrigger",
        ),
    ],
)
def test_a_trigger_without_its_value_is_refused(param: bytes, text: str) -> None:
    (frame,) = LlrpFramer().feed(raw_request(MsgType.ADD_ROSPEC, 1, param))
    with pytest.raises(RequestError, match=text) as caught:
        parse_request(frame)
    assert caught.value.status.code is StatusCode.MISSING_PARAMETER


async def test_a_gpi_port_the_reader_lacks_is_refused() -> None:
    async with ReaderSimulator(antennas=1, name="r") as sim, LlrpProbe("127.0.0.1", sim.port) as p:
        start = StartSpec(StartTrigger.GPI, gpi=GpiTrigger(5, True, 0))  # an R420 has 4
        answer = await p.request(raw_request(MsgType.ADD_ROSPEC, 1, rospec_param(start=start)), 30)
        assert answer.status is StatusCode.FIELD_ERROR
        assert "GPIPortNum 5 outside 1..4" in answer.description


# --- start and stop triggers at work ------------------------------------------------------


async def test_a_periodic_rospec_starts_again_every_period() -> None:
    async with (
        ReaderSimulator(antennas=1, name="r", seed=1, field=shelf(epcs(4), 400)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.enable_events(ROSpecEvent=True)
        periodic = Periodic(offset_ms=50, period_ms=250)
        await probe.add_rospec(
            rospec_param(
                start=StartSpec(StartTrigger.PERIODIC, periodic),
                stop=StopSpec(RoSpecStop.DURATION, 100),
                report=EVERY_TAG,
            )
        )
        await until(lambda: rospec_events(probe).count("End_of_ROSpec") >= 3, "three runs")
        await probe.call("DISABLE_ROSPEC", {"ROSpecID": 1})
        events = rospec_events(probe)
        runs = events.count("Start_of_ROSpec")
        await asyncio.sleep(0.4)
        assert rospec_events(probe).count("Start_of_ROSpec") == runs  # disabled: no more
    assert events[:6] == ["Start_of_ROSpec", "End_of_ROSpec"] * 3
    assert probe.reports >= 3
    assert probe.counts() == sim.emitted


async def test_gpi_start_and_stop_triggers_and_gpi_events() -> None:
    async with (
        ReaderSimulator(antennas=2, name="r", seed=2, field=shelf(epcs(6), 600)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.enable_events(GPIEvent=True, ROSpecEvent=True)
        await probe.add_rospec(
            rospec_param(
                start=StartSpec(StartTrigger.GPI, gpi=GpiTrigger(1, True, 0)),
                stop=StopSpec(RoSpecStop.GPI_WITH_TIMEOUT, gpi=GpiTrigger(1, False, 0)),
                report=EVERY_TAG,
            )
        )
        await asyncio.sleep(0.1)
        assert not sim.inventorying
        assert not probe.reads
        sim.set_gpi(1, True)
        await until(lambda: sim.inventorying, "the GPI start trigger")
        await until(lambda: len(probe.reads) >= 6, "reads while the input is high")
        sim.set_gpi(1, False)
        await until(lambda: not sim.inventorying, "the GPI stop trigger")
        await until(lambda: probe.counts() == sim.emitted, "the report at the ROSpec's end")
        quiet = len(probe.reads)
        sim.set_gpi(2, True)  # another port changes nothing but its event
        await until(lambda: len(kinds(probe, "GPIEvent")) == 3, "the third GPI event")
        assert not sim.inventorying
        assert len(probe.reads) == quiet
    assert kinds(probe, "GPIEvent") == [
        {"GPIPortNumber": 1, "GPIEvent": True},
        {"GPIPortNumber": 1, "GPIEvent": False},
        {"GPIPortNumber": 2, "GPIEvent": True},
    ]
    assert rospec_events(probe) == ["Start_of_ROSpec", "End_of_ROSpec"]
    assert [(port, high) for _, port, high in sim.gpi_changes] == [(1, True), (1, False), (2, True)]


async def test_a_photo_eye_gates_inventory_to_the_pallet_in_the_door() -> None:
    door = DockDoor(photo_eye_gpi=1)
    tags = epcs(5)
    async with (
        ReaderSimulator(antennas=2, name="dock", seed=3) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.enable_events(GPIEvent=True)
        await probe.add_rospec(
            rospec_param(
                start=StartSpec(StartTrigger.GPI, gpi=GpiTrigger(1, True, 0)),
                stop=StopSpec(RoSpecStop.GPI_WITH_TIMEOUT, gpi=GpiTrigger(1, False, 0)),
                report=EVERY_TAG,
            )
        )
        start = sim.now() + 0.05
        pallet = PalletPass(door, tags, start=start, direction=Direction.IN, speed_mps=3.0)
        sim.field.add(pallet)
        await until(lambda: len(sim.gpi_changes) == 2, "the beam broken and clear again")
        await until(lambda: not sim.inventorying, "inventory to end with the beam")
        await until(lambda: probe.counts() == sim.emitted, "the last report")
    (t_high, _, high), (t_low, _, low) = sim.gpi_changes
    enter, leave = pallet.door_window()
    assert (high, low) == (True, False)
    slack = GPI_POLL_S * 5
    assert enter - slack <= t_high <= enter + slack
    assert leave - slack <= t_low <= leave + slack
    # Only the pallet in the door was read, and every case of it, on both sides.
    assert {r.epc_hex for r in probe.reads} == set(tags)
    assert {r.antenna for r in probe.reads} == {1, 2}
    utc_enter = probe.reads[0].first_seen_us or 0
    utc_last = max(r.last_seen_us or 0 for r in probe.reads)
    assert utc_last - utc_enter <= (leave - enter + slack) * 1e6


async def test_a_rospec_duration_and_end_of_rospec_report() -> None:
    async with (
        ReaderSimulator(antennas=1, name="r", seed=4, field=shelf(epcs(3), 300)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.enable_events(ROSpecEvent=True)
        report = ReportSpec(ReportTrigger.N_TAGS_OR_END_OF_ROSPEC, 0, ContentSelector())
        await probe.add_rospec(
            rospec_param(
                stop=StopSpec(RoSpecStop.DURATION, 300),
                aispecs=(((1,), AiStopSpec(AiSpecStop.DURATION, 50)),),
                report=report,
            )
        )
        await until(lambda: rospec_events(probe) == ["Start_of_ROSpec", "End_of_ROSpec"], "end")
        await until(lambda: probe.reports == 1, "the one report")
        await asyncio.sleep(0.1)
    # Six AISpec cycles, one report: only the end of the ROSpec reports.
    assert probe.reports == 1
    assert probe.report_sizes == [3]
    assert probe.counts() == sim.emitted


# --- AISpec stop triggers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("observation", "check"),
    [
        (TagObservation(ObservationKind.N_UNIQUE, 3, 0, 0, 0), "unique>=3"),
        (TagObservation(ObservationKind.N_OBSERVATIONS, 4, 0, 0, 0), "any"),
        (TagObservation(ObservationKind.N_ATTEMPTS, 0, 4, 0, 0), "any"),
        (TagObservation(ObservationKind.NO_NEW_UNIQUE, 0, 0, 60, 0), "unique==5"),
        (TagObservation(ObservationKind.NO_NEW_OBSERVATIONS, 0, 0, 60, 2000), "any"),
        (TagObservation(ObservationKind.N_OBSERVATIONS, 60_000, 0, 0, 100), "any"),
    ],
)
async def test_tag_observation_triggers_end_aispecs(
    observation: TagObservation, check: str
) -> None:
    # The last case is quiet most of the time, so "no new observations" ends on its timeout.
    rate = 1.0 if observation.kind is ObservationKind.NO_NEW_OBSERVATIONS else 400.0
    async with (
        ReaderSimulator(antennas=1, name="r", seed=5, field=shelf(epcs(5), rate)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.enable_events(AISpecEvent=True)
        stop = AiStopSpec(AiSpecStop.TAG_OBSERVATION, observation=observation)
        await probe.add_rospec(rospec_param(aispecs=(((1,), stop),), report=EVERY_TAG))
        await until(lambda: len(kinds(probe, "AISpecEvent")) >= 3, "three AISpec ends")
        await probe.stop_inventory()
    assert kinds(probe, "AISpecEvent")[0] == {
        "EventType": "End_of_AISpec",
        "ROSpecID": 1,
        "SpecIndex": 1,
    }
    assert probe.counts() == sim.emitted
    if check.startswith("unique"):
        full = probe.report_sizes[: len(kinds(probe, "AISpecEvent"))]
        sizes = [s for s in full if s]
        assert sizes
        if check == "unique>=3":
            assert min(sizes) >= 3
        else:
            assert sizes[0] == 5


async def test_aispecs_take_turns_and_gpi_ends_one() -> None:
    async with (
        ReaderSimulator(antennas=2, name="r", seed=6, field=shelf(epcs(4), 800)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.enable_events(AISpecEvent=True)
        first = ((1,), AiStopSpec(AiSpecStop.DURATION, 80))
        second = ((2,), AiStopSpec(AiSpecStop.GPI_WITH_TIMEOUT, gpi=GpiTrigger(3, True, 0)))
        await probe.add_rospec(rospec_param(aispecs=(first, second), report=EVERY_TAG))
        await until(lambda: len(kinds(probe, "AISpecEvent")) == 1, "the first AISpec's end")
        await asyncio.sleep(0.2)
        # The GPI AISpec has no timeout: it runs, and its reads wait for its end.
        assert len(kinds(probe, "AISpecEvent")) == 1
        assert {r.antenna for r in probe.reads} == {1}
        sim.set_gpi(3, True)
        await until(lambda: len(kinds(probe, "AISpecEvent")) >= 3, "back to the first AISpec")
        await probe.stop_inventory()
    assert {r.antenna for r in probe.reads} == {1, 2}
    assert [e["SpecIndex"] for e in kinds(probe, "AISpecEvent")[:3]] == [1, 2, 1]
    assert probe.counts() == sim.emitted


# --- report triggers ----------------------------------------------------------------------


async def test_no_report_trigger_waits_for_get_report() -> None:
    async with (
        ReaderSimulator(antennas=1, name="r", seed=7, field=shelf(epcs(3), 400)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        report = ReportSpec(ReportTrigger.NONE, 0, ContentSelector())
        aispec = ((1,), AiStopSpec(AiSpecStop.DURATION, 50))
        await probe.add_rospec(rospec_param(aispecs=(aispec,), report=report))
        await asyncio.sleep(0.3)
        assert probe.reports == 0
        probe._send(raw_request(MsgType.GET_REPORT, probe.next_id()))
        await until(lambda: probe.reports == 1, "the report GET_REPORT asked for")
        assert probe.report_sizes == [3]
        await probe.stop_inventory()
        assert probe.counts() == sim.emitted


async def test_a_strict_reader_reports_sllurps_defaults_only_at_the_end() -> None:
    async with (
        ReaderSimulator(
            antennas=1, name="r", seed=8, field=shelf(epcs(3), 400), strict=True
        ) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        await probe.start_inventory()  # Null AISpec stop, report N = 0
        await asyncio.sleep(0.3)
        assert probe.reports == 0
        await probe.call("STOP_ROSPEC", {"ROSpecID": 1})
        await until(lambda: probe.reports == 1, "the end-of-ROSpec report")
    assert probe.counts() == sim.emitted


async def test_a_time_based_report_trigger() -> None:
    async with (
        ReaderSimulator(antennas=1, name="r", seed=9, field=shelf(epcs(2), 400)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        report = ReportSpec(ReportTrigger.N_MILLISECONDS, 100, ContentSelector())
        await probe.add_rospec(rospec_param(report=report))
        await until(lambda: probe.reports >= 3, "three timed reports")
        await probe.stop_inventory()
    assert max(probe.report_sizes[:3]) <= 2  # each 100 ms window aggregates per tag
    assert probe.counts() == sim.emitted


async def test_eight_antennas_all_read() -> None:
    async with (
        ReaderSimulator(antennas=8, name="r8", seed=10, field=shelf(epcs(2), 4000)) as sim,
        LlrpProbe("127.0.0.1", sim.port) as probe,
    ):
        caps = await probe.call("GET_READER_CAPABILITIES", {"RequestedData": 1})
        (frame,) = LlrpFramer().feed(caps.raw)
        assert decode(frame).body["GeneralDeviceCapabilities"]["MaxNumberOfAntennaSupported"] == 8
        await probe.start_inventory()
        await until(lambda: {r.antenna for r in probe.reads} == set(range(1, 9)), "8 antennas")
        await probe.stop_inventory()
    assert probe.counts() == sim.emitted


# --- GPO writes, GPI/GPO state -----------------------------------------------------------


async def test_gpo_writes_are_recorded_and_ports_reported() -> None:
    async with ReaderSimulator(antennas=1, name="r") as sim, LlrpProbe("127.0.0.1", sim.port) as p:
        answer = await p.request(
            gpo_write_config(p.next_id(), ((1, True), (2, True), (1, False))),
            MsgType.SET_READER_CONFIG_RESPONSE,
        )
        assert answer.status is StatusCode.SUCCESS
        refused = await p.request(
            gpo_write_config(p.next_id(), ((9, True),)), MsgType.SET_READER_CONFIG_RESPONSE
        )
        assert refused.status is StatusCode.FIELD_ERROR
        assert "GPOPortNumber 9 outside 1..4" in refused.description
        sim.set_gpi(4, True)
        config = await p.call("GET_READER_CONFIG", {"RequestedData": 0})
        (frame,) = LlrpFramer().feed(config.raw)
        body = decode(frame).body
    assert [(port, high) for _, port, high in sim.gpo_writes] == [(1, True), (2, True), (1, False)]
    times = [t for t, _, _ in sim.gpo_writes]
    assert times == sorted(times)
    assert [sim.gpo_level(p) for p in (1, 2, 3)] == [False, True, False]
    gpis = body["GPIPortCurrentState"]
    assert [(g["GPIPortNum"], g["GPIState"]) for g in gpis] == [(1, 0), (2, 0), (3, 0), (4, 1)]
    assert body["LLRPStatus"]["StatusCode"] == "Success"


# --- replay ---------------------------------------------------------------------------------


async def test_replayed_reports_are_the_recorded_bytes_with_fresh_ids() -> None:
    frames = load_reports(CAPTURES)
    assert len(frames) > 20
    expected_reads: list[tuple[str, int, int]] = [read for f in frames for read in f.reads]
    async with ReaderSimulator(antennas=4, name="replay") as sim:
        sim.replay(frames, interval_s=0.0)
        async with LlrpProbe("127.0.0.1", sim.port) as probe:
            await probe.start_inventory()
            await until(lambda: probe.reports == len(frames), "every recorded report")
            await probe.stop_inventory()
    got = probe.report_raw
    assert [g[:6] + g[10:] for g in got] == [f.raw[:6] + f.raw[10:] for f in frames]
    ids = [struct.unpack_from("!I", g, 6)[0] for g in got]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    emitted: dict[tuple[str, int], int] = {}
    for epc, antenna, count in expected_reads:
        emitted[(epc, antenna)] = emitted.get((epc, antenna), 0) + count
    assert dict(sim.emitted) == emitted
