"""The harder doorway physics: stops, backing out, shielded cases, cross traffic, lanes,
multipath and jitter, each with its ground truth (stepped through time, no sleeping)."""

from __future__ import annotations

import random
import statistics
import tomllib
from collections import Counter, defaultdict

import pytest

from firmware_sim.errors import ScenarioError, SimConfigError
from firmware_sim.offline import play
from firmware_sim.portal import TagField
from firmware_sim.portal_door import Direction, DockDoor, Side
from firmware_sim.portal_motion import CrossTraffic, PalletPass
from firmware_sim.portal_rf import Observation, RfModel
from firmware_sim.scenario import (
    DOORWAY_SCENARIOS,
    Scenario,
    bundled_scenario,
    load_scenario,
    parse_scenario,
)

ROUND_S = 0.025
OUTSIDE, INSIDE = 1, 2
DOOR = DockDoor(outside_antennas=(OUTSIDE,), inside_antennas=(INSIDE,))
NEW_SCENARIOS = DOORWAY_SCENARIOS


def epcs(n: int, base: int = 0) -> list[str]:
    return [f"3054257bf461a840{base + i:08x}" for i in range(n)]


def step(
    field: TagField, end: float, rng: random.Random, antennas: tuple[int, ...] = (1, 2)
) -> list[tuple[float, Observation]]:
    rounds = round(end / ROUND_S)
    assert rounds < 100_000
    seen = []
    for k in range(rounds + 1):
        t = k * ROUND_S
        seen.extend((t, o) for o in field.observe(t, ROUND_S, antennas, rng))
    return seen


def test_a_forklift_that_stops_in_the_door_is_read_by_both_sides_all_the_while() -> None:
    pallet = PalletPass(
        DOOR,
        epcs(10),
        start=0.0,
        direction=Direction.IN,
        speed_mps=3.0,
        stop_at_m=0.0,
        stop_s=10.0,
        layout_seed=1,
    )
    arrive = pallet.start + DOOR.approach_m / 3.0
    assert pallet.centre_x(arrive + 5.0) == pytest.approx(0.0)
    assert pallet.centre_x(pallet.end) > DOOR.approach_m  # then it goes on in
    seen = step(TagField([pallet]), pallet.end + 0.5, random.Random(1))
    stopped = [o.antenna for t, o in seen if arrive + 1 < t < arrive + 9]
    counts = Counter(stopped)
    assert counts[OUTSIDE] > 100
    assert counts[INSIDE] > 100
    low, high = pallet.read_window()
    assert high - low > 10.0


def test_a_pallet_that_backs_out_leaves_on_the_side_it_came_from() -> None:
    pallet = PalletPass(
        DOOR, epcs(8), start=0.0, direction=Direction.IN, speed_mps=2.0, turn_at_m=0.0
    )
    assert pallet.turns_back
    assert pallet.centre_x(pallet.legs[0].t1) == pytest.approx(0.0)
    assert pallet.centre_x(pallet.end) < -DOOR.approach_m
    seen = step(TagField([pallet]), pallet.end + 0.5, random.Random(2))
    by_tag: dict[str, list[int]] = defaultdict(list)
    for _, o in seen:
        by_tag[o.epc_hex].append(o.antenna)
    assert set(by_tag) == set(pallet.epcs)
    for antennas in by_tag.values():
        assert antennas[0] == antennas[-1] == OUTSIDE


def test_shielded_cases_answer_one_to_three_times_per_pass() -> None:
    door = DockDoor(rf=RfModel(d0_m=0.7, far_m=3.0), approach_m=3.0)
    pallet = PalletPass(
        door,
        epcs(30),
        start=0.0,
        direction=Direction.OUT,
        speed_mps=2.0,
        shielded=12,
        leaks=(1, 3),
        spread_m=0.5,
        lateral_m=0.6,
        layout_seed=3,
    )
    shielded = pallet.shielded_epcs
    assert len(shielded) == 12
    seen = step(TagField([pallet]), pallet.end + 0.5, random.Random(3))
    reads = Counter(o.epc_hex for _, o in seen)
    assert all(1 <= reads[e] <= 3 for e in shielded)
    assert all(reads[e] > 3 for e in set(pallet.epcs) - shielded)
    near = [o.rssi for _, o in seen if o.epc_hex not in shielded]
    weak = [o.rssi for _, o in seen if o.epc_hex in shielded]
    assert max(weak) < max(near) - 6, "a shielded case answers weaker"


def test_cross_traffic_is_read_by_one_side_only() -> None:
    traffic = CrossTraffic(
        DOOR, epcs(10), side=Side.OUTSIDE, start=0.0, speed_mps=2.0, offset_m=0.5
    )
    seen = step(TagField([traffic]), traffic.end + 0.5, random.Random(4))
    assert seen
    assert {o.antenna for _, o in seen} == {OUTSIDE}


def test_multipath_gives_weak_reads_on_the_far_side() -> None:
    rf = RfModel(stray_probability=0.05, stray_rssi_dbm=-70.0, stray_range_m=2.0)
    door = DockDoor(outside_antennas=(OUTSIDE,), inside_antennas=(INSIDE,), rf=rf)
    plain = PalletPass(DOOR, epcs(10), start=0.0, direction=Direction.IN, speed_mps=3.0)
    echoing = PalletPass(door, epcs(10), start=0.0, direction=Direction.IN, speed_mps=3.0)
    early = echoing.start + (door.approach_m - 1.8) / 3.0  # still 1.8 m outside the door
    clean = step(TagField([plain]), early, random.Random(5))
    stray = step(TagField([echoing]), early, random.Random(5))
    assert not [o for _, o in clean if o.antenna == INSIDE]
    far = [o.rssi for _, o in stray if o.antenna == INSIDE]
    assert far
    assert statistics.mean(far) < -60


def test_two_lanes_are_read_mostly_by_their_own_antennas() -> None:
    door = DockDoor(
        outside_antennas=(1, 3),
        inside_antennas=(2, 4),
        outside_y_m=(-0.7, 0.7),
        inside_y_m=(-0.7, 0.7),
        rf=RfModel(d0_m=0.7, far_m=3.0),
        approach_m=3.0,
    )
    right = PalletPass(door, epcs(10), start=0.0, direction=Direction.IN, speed_mps=3.0, lane_m=0.7)
    seen = step(TagField([right]), right.end, random.Random(6), antennas=(1, 2, 3, 4))
    counts = Counter(o.antenna for _, o in seen)
    assert counts[3] > 2 * counts[1]
    assert counts[4] > 2 * counts[2]


def test_door_geometry_errors_name_the_value() -> None:
    with pytest.raises(SimConfigError, match="outside_y_m"):
        DockDoor(outside_y_m=(0.0, 1.0))
    with pytest.raises(SimConfigError, match="turn_at_m"):
        PalletPass(DOOR, epcs(1), start=0, direction=Direction.IN, speed_mps=1, turn_at_m=9.0)
    with pytest.raises(SimConfigError, match="stray_probability"):
        RfModel(stray_probability=0.9)


@pytest.mark.parametrize("name", NEW_SCENARIOS)
def test_every_doorway_scenario_has_its_ground_truth(name: str) -> None:
    scenario = load_scenario(bundled_scenario(name))
    tag_passes = scenario.tag_passes()
    assert tag_passes
    truth = scenario.ground_truth()
    crossed_in = {p.urn for p in tag_passes if p.expected == "in"}
    crossed_out = {p.urn for p in tag_passes if p.expected == "out"}
    assert truth.received == crossed_in
    assert truth.shipped == crossed_out
    for tag_pass in tag_passes:
        assert tag_pass.start_s < tag_pass.end_s <= scenario.duration_s + 1e-9
        assert (tag_pass.expected is None) == (tag_pass.kind in ("back_out", "staged", "cross"))
    assert scenario.duration_s < 35


def test_backing_out_and_cross_traffic_move_nothing_in_the_truth() -> None:
    back_out = load_scenario(bundled_scenario("back_out"))
    kinds = Counter(p.kind for p in back_out.tag_passes())
    assert kinds["back_out"] == 40
    b2 = {u.urn for u in back_out.pallet_units("B2")}
    # B2 came in, backed out of its shipment: it is still in stock.
    assert b2 <= back_out.ground_truth().received
    assert not b2 & back_out.ground_truth().shipped
    cross = load_scenario(bundled_scenario("cross_traffic"))
    crossing = {u.urn for pallet in ("X1", "X2") for u in cross.pallet_units(pallet)}
    truth = cross.ground_truth()
    assert not crossing & (truth.received | truth.shipped)


def _data(name: str) -> dict[str, object]:
    return tomllib.loads(bundled_scenario(name).read_text(encoding="utf-8"))


def test_a_pallet_cannot_back_out_from_where_it_is_not() -> None:
    data = _data("back_out")
    passes = data["passes"]
    assert isinstance(passes, list)
    passes[3]["direction"] = "in"  # B2 is inside by then: it cannot start inwards
    with pytest.raises(ValueError, match=r"passes\[3\]: pallet 'B2' is inside"):
        Scenario.model_validate(data)


def test_a_stop_needs_its_length() -> None:
    text = bundled_scenario("doorway_stop").read_text(encoding="utf-8")
    with pytest.raises(ScenarioError, match="stop_at_m and stop_s go together"):
        parse_scenario(text.replace("stop_s = 20.0", ""))


def test_two_lanes_may_pass_at_once_but_one_lane_may_not() -> None:
    data = _data("wide_door")
    passes = data["passes"]
    assert isinstance(passes, list)
    passes[2]["lane_m"] = -0.7  # W2 now drives in W1's lane while W1 comes out
    with pytest.raises(ValueError, match="enters the read zone while"):
        Scenario.model_validate(data)


def test_offline_play_reports_every_reader_with_jittered_times() -> None:
    scenario = load_scenario(bundled_scenario("jitter"))
    reports = list(play(scenario))
    assert reports
    assert {r.reader for r in reports} == {scenario.reader.name}
    stamps = [e.first_seen_us for r in reports for e in r.entries]
    # Rounds are 25 ms apart; jittered stamps fall between them.
    assert any(s % 25_000 for s in stamps)
    read = {e.epc_hex for r in reports for e in r.entries}
    assert read == {u.epc_hex for u in scenario.units}
    assert list(play(scenario)) == reports, "offline play is reproducible"
