"""Pallet-level direction: tags that crossed together are judged together.

Reads are made the way a door makes them: RSSI rises as the tag nears an antenna and falls
as it goes away (a tag at position x, in metres along the path, is 0.5 m from the door's
antennas at x = -0.5 and x = +0.5).
"""

from __future__ import annotations

import pytest

from edge.config import PortalSettings
from edge.pass_groups import CONFIRM_S, MAX_WAIT_S
from edge.passes import Pass
from edge.pipeline import PassTracker
from edge.readers.types import TagRead
from wire.identifiers import sgtin96_hex

T0_US = 1_700_000_000_000_000
OUT, IN = 1, 2
HOLD_S = 1.0


def epc(n: int) -> str:
    return sgtin96_hex(f"urn:epc:id:sgtin:0614141.107346.{1000 + n}")


def portal() -> PortalSettings:
    return PortalSettings.model_validate(
        {
            "read_point": "wh1.dock.1",
            "reader": "dock1",
            "outside_antennas": [OUT],
            "inside_antennas": [IN],
            "group_hold_s": HOLD_S,
        }
    )


def rssi_at(x: float, antenna: int) -> float:
    where = -0.5 if antenna == OUT else 0.5
    return round(-40.0 - 14.0 * abs(x - where), 1)


def read(tag: str, antenna: int, at_s: float, rssi: float) -> TagRead:
    us = T0_US + round(at_s * 1_000_000)
    return TagRead(
        reader="dock1", epc_hex=tag, antenna=antenna, rssi=rssi, first_seen_us=us, last_seen_us=us
    )


def cross(tracker: PassTracker, tag: str, direction: str, start: float, speed: float = 2.0) -> None:
    """A tag carried through the door: read every 50 ms while within 1.2 m of an antenna."""
    sign = 1.0 if direction == "in" else -1.0
    t = 0.0
    while t <= 3.0 / speed:
        x = sign * (-1.5 + speed * t)
        for antenna in (OUT, IN):
            if abs(x - (-0.5 if antenna == OUT else 0.5)) <= 1.2:
                tracker.observe(read(tag, antenna, start + t, rssi_at(x, antenna)), start + t)
        t += 0.05


def once(tracker: PassTracker, tag: str, antenna: int, at_s: float, x: float) -> None:
    """A single weak read (a shielded case) at position ``x``."""
    tracker.observe(read(tag, antenna, at_s, rssi_at(x, antenna) - 12.0), at_s)


def run_out(tracker: PassTracker, until: float, start: float = 0.0) -> list[Pass]:
    """Tick every 100 ms from ``start`` to ``until``; what ended."""
    ended: list[Pass] = []
    t = start
    step = 0.1
    while t <= until:
        ended.extend(tracker.tick(t))
        t += step
    return ended


def by_epc(passes: list[Pass]) -> dict[str, Pass]:
    found = {p.epc_hex: p for p in passes}
    assert len(found) == len(passes), "one pass per tag"
    return found


def a_case_on_probation() -> tuple[PassTracker, dict[str, Pass]]:
    """Eight cases carried in, and a ninth read once on the outside only (shielded, or
    standing beside the door): the eight have passed, the ninth is still on probation."""
    tracker = PassTracker(portal())
    for n in range(8):
        cross(tracker, epc(n), "in", 0.0)
    once(tracker, epc(20), OUT, 0.5, -0.5)
    passes = by_epc(run_out(tracker, 6.0))
    assert epc(20) not in passes, "on probation"
    return tracker, passes


def test_a_pallets_weak_cases_take_the_pallets_direction() -> None:
    tracker = PassTracker(portal())
    for n in range(10):
        cross(tracker, epc(n), "in", 0.0 + n * 0.01)
    # Shielded cases: one weak read as the pallet passes the outside antenna, or the inside.
    once(tracker, epc(20), OUT, 0.5, -0.5)
    once(tracker, epc(21), IN, 1.0, 0.5)
    # Nothing else is read: the probation of the one-sided cases ends once the door is quiet.
    passes = by_epc(run_out(tracker, 5.0 + CONFIRM_S + MAX_WAIT_S + 1.0))
    assert len(passes) == 12
    assert {p.direction for p in passes.values()} == {"in"}
    assert passes[epc(20)].decided_by == passes[epc(21)].decided_by == "group"
    assert passes[epc(0)].decided_by == "tag"
    groups = {p.group for p in passes.values()}
    assert len(groups) == 1
    assert groups != {None}
    assert {p.group_size for p in passes.values()} == {12}
    assert len(tracker) == 0


def test_passes_wait_until_the_door_is_quiet() -> None:
    tracker = PassTracker(portal())
    cross(tracker, epc(1), "in", 0.0)
    # Last read at 1.5 s: departs at 3.5 s, handed out once quiet for HOLD_S.
    assert run_out(tracker, 3.6) == []
    assert len(tracker) == 1
    done = run_out(tracker, 3.6 + HOLD_S + 0.2)
    assert [p.direction for p in done] == ["in"]


def test_a_case_carried_back_out_keeps_its_own_direction() -> None:
    tracker = PassTracker(portal())
    for n in range(8):
        cross(tracker, epc(n), "in", 0.0)
    cross(tracker, epc(9), "out", 0.0)
    passes = by_epc(run_out(tracker, 8.0))
    assert passes[epc(9)].direction == "out"
    assert passes[epc(9)].decided_by == "tag"
    assert {passes[epc(n)].direction for n in range(8)} == {"in"}


def test_weak_evidence_against_the_group_stays_unresolved() -> None:
    tracker = PassTracker(portal())
    for n in range(8):
        cross(tracker, epc(n), "in", 0.0)
    # Read once inside while the pallet was still outside, once outside after it crossed.
    once(tracker, epc(20), IN, 0.2, -1.1)
    once(tracker, epc(20), OUT, 1.3, 1.1)
    passes = by_epc(run_out(tracker, 8.0))
    weak = passes[epc(20)]
    assert weak.direction is None
    assert weak.reason == "group_conflict"
    assert weak.group == passes[epc(0)].group


def test_two_pallets_crossing_at_once_in_opposite_directions_keep_their_own() -> None:
    tracker = PassTracker(portal())
    for n in range(6):
        cross(tracker, epc(n), "in", 0.0)
        cross(tracker, epc(10 + n), "out", 0.0)
    once(tracker, epc(30), OUT, 0.5, -0.5)
    passes = by_epc(run_out(tracker, 8.0))
    assert {passes[epc(n)].direction for n in range(6)} == {"in"}
    assert {passes[epc(10 + n)].direction for n in range(6)} == {"out"}
    # No direction the group agrees on: the weak case is not guessed.
    assert passes[epc(30)].direction is None


def test_goods_beside_the_door_do_not_ride_a_passing_pallet() -> None:
    tracker = PassTracker(portal())
    staged = epc(40)
    # Standing outside, read now and then for ten seconds; it departs.
    for k in range(20):
        tracker.observe(read(staged, OUT, k * 0.5, -66.0), k * 0.5)
    passes = run_out(tracker, 13.9, start=9.6)
    for n in range(8):
        cross(tracker, epc(n), "in", 14.0)
    once(tracker, staged, OUT, 14.5, -0.5)  # read once while the pallet passes
    passes += run_out(tracker, 14.0 + 5.0 + CONFIRM_S + 1.0, start=14.0)
    mine = [p for p in passes if p.epc_hex == staged]
    assert [p.direction for p in mine] == [None, None]
    assert {p.direction for p in passes if p.epc_hex != staged} == {"in"}


def test_a_one_sided_case_read_again_beside_the_door_loses_the_groups_direction() -> None:
    tracker, passes = a_case_on_probation()
    assert {p.direction for p in passes.values()} == {"in"}
    # Still there, read again on the outside: it was standing beside the door.
    ended: list[Pass] = []
    for k in range(5):
        at = 7.0 + k * 0.3
        tracker.observe(read(epc(20), OUT, at, -65.0), at)
        ended += run_out(tracker, at + 0.25, start=at)
    ended += run_out(tracker, 20.0, start=8.5)
    mine = [p for p in ended if p.epc_hex == epc(20)]
    assert [p.direction for p in mine] == [None, None]
    assert mine[0].reason in ("one_side", "too_few_reads")


def test_probation_counts_the_readers_time_not_a_loaded_hosts() -> None:
    """A loaded gateway takes reads in late: 15 s of host time pass while the reader's
    clock moves 4 s. The staged case's re-read, stamped 4 s after the pallet, still
    counts as a re-read within the probation (it keeps its own verdict)."""
    tracker, _ = a_case_on_probation()
    # The host runs on (ticks up to 15 s) while reads of other tags keep coming in, each
    # stamped only a little later by the reader: the backlog is being worked off.
    late: list[Pass] = []
    for k in range(90):
        host = 6.1 + k * 0.1
        tracker.observe(read(epc(50), IN, 2.0 + k * 0.02, -70.0), host)
        late += tracker.tick(host)
    assert epc(20) not in by_epc(late), "host time alone does not end the probation"
    for k in range(5):
        tracker.observe(read(epc(20), OUT, 4.0 + k * 0.3, -65.0), 15.1 + k * 0.1)
        late += tracker.tick(15.1 + k * 0.1)
    late += run_out(tracker, 15.5 + CONFIRM_S + MAX_WAIT_S + 1.0, start=15.6)
    mine = [p for p in late if p.epc_hex == epc(20)]
    assert [p.direction for p in mine] == [None, None]


def test_a_case_read_again_before_its_pass_is_judged_keeps_its_own_verdict() -> None:
    """A staged case read once as the pallet passes, then read on and on beside the door:
    its next pass began before the first was judged, and outlasts the probation."""
    tracker = PassTracker(portal())
    for n in range(8):
        cross(tracker, epc(n), "in", 0.0)
    # Stamped 0.5 s by the reader, taken in just after the pallet's reads (host 1.6 s).
    tracker.observe(read(epc(20), OUT, 0.5, rssi_at(-0.5, OUT) - 12.0), 1.6)
    passes: list[Pass] = []
    passes += run_out(tracker, 3.95)  # its first pass ended at 3.6 s; judged at 4.6 s
    for k in range(20):
        at = 4.0 + k * 1.0
        tracker.observe(read(epc(20), OUT, at, -66.0), at)
        passes += run_out(tracker, at + 0.95, start=at + 0.05)
    passes += run_out(tracker, 25.0 + CONFIRM_S + MAX_WAIT_S + 1.0, start=24.0)
    mine = [p for p in passes if p.epc_hex == epc(20)]
    assert [p.direction for p in mine] == [None, None]
    assert {p.direction for p in passes if p.epc_hex != epc(20)} == {"in"}


def test_a_group_pass_becomes_an_event_with_its_evidence() -> None:
    tracker = PassTracker(portal())
    for n in range(5):
        cross(tracker, epc(n), "out", 0.0)
    passes = by_epc(run_out(tracker, 8.0))
    event = passes[epc(0)].to_event("e-1")
    assert event.direction == "out"
    assert event.biz_step == "shipping"
    assert event.group is not None
    assert event.group.startswith("wh1.dock.1@")
    reads = event.reads
    assert reads is not None
    assert reads.group_size == 5
    assert reads.decided_by == "tag"
    assert reads.last_strong == ["inside", "outside"]
    assert reads.outside is not None
    assert reads.inside is not None
    assert reads.inside.count == reads.inside_count
    assert reads.inside.peak_ms is not None
    assert reads.outside.peak_ms is not None
    assert reads.inside.peak_ms < reads.outside.peak_ms
    assert reads.inside.trend_db_per_s is not None
    assert reads.outside.trend_db_per_s is not None
    assert reads.inside.trend_db_per_s < 0 < reads.outside.trend_db_per_s


@pytest.mark.parametrize("hold", [0.0, 2.0])
def test_hold_zero_judges_each_tag_alone(hold: float) -> None:
    settings = portal().model_copy(update={"group_hold_s": hold})
    tracker = PassTracker(settings)
    for n in range(5):
        cross(tracker, epc(n), "in", 0.0)
    once(tracker, epc(20), OUT, 0.5, -0.5)
    # Nothing is read after the pallet: the probation ends once the door has been quiet.
    passes = by_epc(run_out(tracker, 5.0 + CONFIRM_S + MAX_WAIT_S + 3.0))
    weak = passes[epc(20)]
    if hold:
        assert weak.direction == "in"
    else:
        assert weak.direction is None
        assert weak.group is None


def test_a_retuned_portal_keeps_the_passes_waiting_for_their_group() -> None:
    tracker = PassTracker(portal())
    for n in range(5):
        cross(tracker, epc(n), "in", 0.0)
    assert run_out(tracker, 3.6) == []
    assert len(tracker) == 5
    retuned = PassTracker(portal().model_copy(update={"departure_timeout_s": 3.0}))
    retuned.adopt(tracker)
    assert len(tracker) == 0
    done = run_out(retuned, 6.0, start=3.7)
    assert [p.direction for p in done] == ["in"] * 5
