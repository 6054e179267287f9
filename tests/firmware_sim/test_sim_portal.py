"""The physical model, stepped through simulated time (no sleeping)."""

from __future__ import annotations

import random
import statistics
from collections import Counter, defaultdict

import pytest

from firmware_sim.errors import SimConfigError
from firmware_sim.portal import ShelfPopulation, StagedPallet, TagField
from firmware_sim.portal_door import Direction, DockDoor, Side
from firmware_sim.portal_motion import PalletPass
from firmware_sim.portal_rf import Observation, RfModel

ROUND_S = 0.025
OUTSIDE, INSIDE = 1, 2
DOOR = DockDoor(outside_antennas=(OUTSIDE,), inside_antennas=(INSIDE,))


def epcs(n: int, base: int = 0) -> list[str]:
    return [f"3054257bf461a840{base + i:08x}" for i in range(n)]


def step(
    field: TagField,
    start: float,
    end: float,
    rng: random.Random,
    antennas: tuple[int, ...] = (OUTSIDE, INSIDE),
) -> list[tuple[float, Observation]]:
    """Run inventory rounds from ``start`` to ``end`` (bounded by the round count)."""
    seen = []
    rounds = round((end - start) / ROUND_S)
    assert rounds < 100_000
    for k in range(rounds + 1):
        t = start + k * ROUND_S
        seen.extend((t, o) for o in field.observe(t, ROUND_S, antennas, rng))
    return seen


def sides_by_tag(seen: list[tuple[float, Observation]]) -> dict[str, list[int]]:
    by_tag: dict[str, list[int]] = defaultdict(list)
    for _, obs in seen:
        by_tag[obs.epc_hex].append(obs.antenna)
    return by_tag


@pytest.mark.parametrize(
    ("direction", "first", "last"),
    [(Direction.IN, OUTSIDE, INSIDE), (Direction.OUT, INSIDE, OUTSIDE)],
)
def test_a_pass_is_read_first_on_the_side_it_comes_from(
    direction: Direction, first: int, last: int
) -> None:
    tags = right = 0
    for seed in range(40):
        pallet = PalletPass(
            DOOR, epcs(8), start=1.0, direction=direction, speed_mps=3.0, layout_seed=seed
        )
        seen = step(TagField([pallet]), 0.0, pallet.end + 0.5, random.Random(seed))
        by_tag = sides_by_tag(seen)
        assert set(by_tag) == set(pallet.epcs), "every case is read"
        for antennas in by_tag.values():
            tags += 1
            assert set(antennas) == {OUTSIDE, INSIDE}, "every case is read on both sides"
            right += antennas[0] == first and antennas[-1] == last
    assert right / tags >= 0.99


def test_the_middle_of_a_pass_is_read_by_both_sides() -> None:
    pallet = PalletPass(
        DOOR, epcs(10), start=0.0, direction=Direction.IN, speed_mps=1.0, layout_seed=1
    )
    seen = step(TagField([pallet]), 0.0, pallet.end, random.Random(1))
    at_door = [o.antenna for t, o in seen if abs(pallet.centre_x(t)) < 0.15]
    assert set(at_door) == {OUTSIDE, INSIDE}


def test_no_read_outside_the_read_window() -> None:
    for seed in range(20):
        pallet = PalletPass(
            DOOR, epcs(6), start=2.0, direction=Direction.OUT, speed_mps=2.0, layout_seed=seed
        )
        low, high = pallet.read_window()
        seen = step(TagField([pallet]), 0.0, pallet.end + 1.0, random.Random(seed))
        assert seen
        assert all(low <= t <= high for t, _ in seen)
        assert 2.0 < low < high < pallet.end


def test_finished_things_leave_the_field() -> None:
    pallet = PalletPass(DOOR, epcs(2), start=0.0, direction=Direction.IN, speed_mps=3.0)
    field = TagField([pallet])
    field.observe(pallet.end - 0.01, ROUND_S, (1, 2), random.Random(0))
    assert len(field) == 1
    field.observe(pallet.end + 0.01, ROUND_S, (1, 2), random.Random(0))
    assert len(field) == 0


def test_rssi_falls_with_distance() -> None:
    pallet = PalletPass(
        DOOR, epcs(20), start=0.0, direction=Direction.IN, speed_mps=0.5, layout_seed=3
    )
    seen = step(TagField([pallet]), 0.0, pallet.end, random.Random(3))
    near = [o.rssi for t, o in seen if o.antenna == OUTSIDE and abs(pallet.centre_x(t) + 0.5) < 0.1]
    far = [o.rssi for t, o in seen if o.antenna == OUTSIDE and abs(pallet.centre_x(t) + 0.5) > 0.6]
    assert near
    assert far
    assert statistics.mean(near) > statistics.mean(far) + 5
    assert all(-128 <= o.rssi <= 127 for _, o in seen)


def test_only_driven_antennas_read() -> None:
    pallet = PalletPass(DOOR, epcs(5), start=0.0, direction=Direction.IN, speed_mps=3.0)
    seen = step(TagField([pallet]), 0.0, pallet.end, random.Random(0), antennas=(INSIDE,))
    assert seen
    assert {o.antenna for _, o in seen} == {INSIDE}


def test_the_model_is_reproducible() -> None:
    def run() -> list[tuple[float, Observation]]:
        pallet = PalletPass(
            DOOR, epcs(5), start=0.0, direction=Direction.IN, speed_mps=3.0, layout_seed="a"
        )
        return step(TagField([pallet]), 0.0, pallet.end, random.Random(42))

    assert run() == run()


@pytest.mark.parametrize(("side", "antenna"), [(Side.OUTSIDE, OUTSIDE), (Side.INSIDE, INSIDE)])
def test_a_staged_pallet_is_read_by_its_side_only_and_now_and_then(
    side: Side, antenna: int
) -> None:
    staged = StagedPallet(DOOR, epcs(6), side=side, start=1.0, end=11.0, read_probability=0.02)
    seen = step(TagField([staged]), 0.0, 12.0, random.Random(5))
    assert {o.antenna for _, o in seen} == {antenna}
    assert all(1.0 <= t <= 11.0 for t, _ in seen)
    rounds = 10.0 / ROUND_S
    per_tag_round = len(seen) / (6 * rounds)
    assert 0.01 < per_tag_round < 0.03
    assert set(sides_by_tag(seen)) == set(staged.epcs)


def test_a_shelf_is_read_at_its_rate_on_every_antenna() -> None:
    shelf = ShelfPopulation(epcs(50), reads_per_s=2000)
    seen = step(TagField([shelf]), 0.0, 5.0 - ROUND_S, random.Random(9), antennas=(1, 2, 3, 4))
    assert 9_500 < len(seen) < 10_500
    assert {o.antenna for _, o in seen} == {1, 2, 3, 4}
    assert set(sides_by_tag(seen)) == set(shelf.epcs)
    assert all(-65 <= o.rssi <= -45 for _, o in seen)


def test_a_shelf_limited_to_some_antennas() -> None:
    shelf = ShelfPopulation(epcs(3), reads_per_s=400, antennas=(2, 9))
    seen = step(TagField([shelf]), 0.0, 1.0, random.Random(1), antennas=(1, 2))
    assert seen
    assert {o.antenna for _, o in seen} == {2}


def test_things_can_be_taken_out() -> None:
    shelf = ShelfPopulation(epcs(3), reads_per_s=400)
    field = TagField([shelf])
    field.discard(shelf)
    field.discard(shelf)
    assert len(field) == 0
    assert field.observe(0.0, 1.0, (1,), random.Random(0)) == []


def test_reads_are_counted_per_tag_and_antenna() -> None:
    field = TagField(
        [
            PalletPass(DOOR, epcs(4), start=0.0, direction=Direction.IN, speed_mps=3.0),
            StagedPallet(DOOR, epcs(2, base=100), side=Side.INSIDE, start=0.0, end=3.0),
        ]
    )
    seen = step(field, 0.0, 3.0, random.Random(2))
    counts = Counter((o.epc_hex, o.antenna) for _, o in seen)
    staged_outside = [k for k in counts if k[0] in epcs(2, base=100) and k[1] == OUTSIDE]
    assert staged_outside == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: DockDoor(outside_antennas=(1,), inside_antennas=(1,)),
        lambda: DockDoor(outside_antennas=(), inside_antennas=(2,)),
        lambda: DockDoor(outside_x_m=0.5, inside_x_m=1.0),
        lambda: DockDoor(approach_m=0.4),
        lambda: RfModel(p0=0.0),
        lambda: RfModel(min_probability=0.99, p0=0.5),
        lambda: PalletPass(DOOR, epcs(1), start=0, direction=Direction.IN, speed_mps=0.0),
        lambda: StagedPallet(DOOR, epcs(1), side=Side.INSIDE, start=5, end=1),
        lambda: ShelfPopulation([], reads_per_s=10),
        lambda: ShelfPopulation(epcs(1), reads_per_s=-1),
    ],
)
def test_impossible_setups_are_refused(make: object) -> None:
    with pytest.raises(SimConfigError):
        make()  # type: ignore[operator]


def test_a_photo_eye_is_blocked_while_the_pallet_is_in_the_door() -> None:
    door = DockDoor(photo_eye_gpi=2, pallet_half_length_m=0.6)
    pallet = PalletPass(door, epcs(3), start=10.0, direction=Direction.OUT, speed_mps=2.0)
    enter, leave = pallet.door_window()
    assert leave - enter == pytest.approx(1.2 / 2.0)
    field = TagField([pallet, ShelfPopulation(epcs(2, 100), reads_per_s=10)])
    steps = [10.0 + i * 0.01 for i in range(400)]
    blocked = [t for t in steps if field.gpi_high(t) == {2}]
    assert not [t for t in steps if field.gpi_high(t) not in (set(), {2})]
    assert blocked[0] == pytest.approx(enter, abs=0.011)
    assert blocked[-1] == pytest.approx(leave, abs=0.011)
    assert not TagField(
        [PalletPass(DockDoor(), epcs(1), start=0, direction=Direction.IN, speed_mps=1)]
    ).gpi_high(2.5)
    with pytest.raises(SimConfigError):
        DockDoor(photo_eye_gpi=0)
