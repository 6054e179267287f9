"""Pass tracking at a dock door, driven by an explicit clock (no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge.config import PortalSettings
from edge.passes import BIZ_STEPS, Pass
from edge.pipeline import PassTracker, judge
from edge.readers.types import TagRead
from wire.identifiers import sgtin96_hex

T0_US = 1_700_000_000_000_000
EPC_A = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.2017")
EPC_B = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.2018")
OUT, IN = 1, 2


def portal(**changes: object) -> PortalSettings:
    values: dict[str, object] = {
        "read_point": "wh1.dock.1",
        "reader": "dock1",
        "outside_antennas": [OUT, 3],
        "inside_antennas": [IN],
        "departure_timeout_s": 2.0,
        "min_reads": 2,
        # Each tag judged alone, handed out as it departs (groups: test_pass_groups.py).
        "group_hold_s": 0,
    }
    values.update(changes)
    return PortalSettings.model_validate(values)


def read(epc: str, antenna: int, at_s: float, rssi: float | None = -55.0) -> TagRead:
    """A read at ``at_s`` seconds after T0 (reader time equals host time here)."""
    us = T0_US + round(at_s * 1_000_000)
    return TagRead(
        reader="dock1", epc_hex=epc, antenna=antenna, rssi=rssi, first_seen_us=us, last_seen_us=us
    )


def feed(tracker: PassTracker, reads: Script) -> None:
    for epc, antenna, at_s in reads:
        assert tracker.observe(read(epc, antenna, at_s), at_s)


Script = list[tuple[str, int, float]]


def sweep(epc: str, first: int, second: int, start: float, n: int = 5) -> Script:
    """``n`` reads on ``first`` then ``n`` on ``second``, 0.1 s apart."""
    reads = [(epc, first, start + i * 0.1) for i in range(n)]
    reads += [(epc, second, start + (n + i) * 0.1) for i in range(n)]
    return reads


def only(passes: list[Pass]) -> Pass:
    assert len(passes) == 1, passes
    return passes[0]


def test_outside_then_inside_is_in() -> None:
    tracker = PassTracker(portal())
    feed(tracker, sweep(EPC_A, OUT, IN, 0.0))
    assert tracker.tick(2.5) == []  # last read at 0.9 s: not gone yet
    done = only(tracker.tick(3.0))
    assert done.direction == "in"
    assert done.confidence > 0.9
    assert done.count == 10
    assert done.antennas == (OUT, IN)
    assert len(tracker) == 0


def test_inside_then_outside_is_out() -> None:
    tracker = PassTracker(portal())
    feed(tracker, sweep(EPC_A, IN, OUT, 0.0))
    done = only(tracker.tick(10.0))
    assert done.direction == "out"
    assert done.confidence > 0.9


def test_one_side_only_has_no_direction() -> None:
    tracker = PassTracker(portal())
    # A pallet staged inside the door: read many times, only by the inside antenna.
    feed(tracker, [(EPC_A, IN, i * 0.1) for i in range(15)])
    done = only(tracker.tick(10.0))
    assert done.direction is None
    assert done.confidence == 0.0
    assert done.count == 15


def test_below_min_reads_has_no_direction() -> None:
    tracker = PassTracker(portal(min_reads=5))
    feed(tracker, [(EPC_A, OUT, 0.0), (EPC_A, IN, 0.5)])
    done = only(tracker.tick(10.0))
    assert done.direction is None
    assert done.confidence == 0.0


def test_stray_first_and_last_reads_do_not_flip_direction() -> None:
    tracker = PassTracker(portal())
    # Carried in, but the very first read leaked through to the inside antenna and the
    # very last one came from the outside antenna (weak, as reflections are): first/last
    # alone would say "out".
    tracker.observe(read(EPC_A, IN, 0.0, rssi=-72.0), 0.0)
    for epc, antenna, at_s in sweep(EPC_A, OUT, IN, 0.1, n=6):
        tracker.observe(read(epc, antenna, at_s, rssi=-45.0), at_s)
    tracker.observe(read(EPC_A, OUT, 1.4, rssi=-73.0), 1.4)
    done = only(tracker.tick(10.0))
    assert done.direction == "in"
    assert 0 < done.confidence < 1


def test_tag_parked_between_both_sides_has_no_direction() -> None:
    tracker = PassTracker(portal())
    feed(tracker, [(EPC_A, OUT if i % 2 else IN, i * 0.1) for i in range(20)])
    done = only(tracker.tick(10.0))
    assert done.direction is None


def test_confidence_grows_with_reads_on_both_sides() -> None:
    weak, strong = PassTracker(portal()), PassTracker(portal())
    feed(weak, sweep(EPC_A, OUT, IN, 0.0, n=1))
    feed(strong, sweep(EPC_A, OUT, IN, 0.0, n=6))
    weak_pass, strong_pass = only(weak.tick(10.0)), only(strong.tick(10.0))
    assert weak_pass.direction == strong_pass.direction == "in"
    assert 0 < weak_pass.confidence < strong_pass.confidence <= 1


def test_quiet_tag_ends_after_departure_timeout() -> None:
    tracker = PassTracker(portal(departure_timeout_s=2.0))
    feed(tracker, [(EPC_A, OUT, 0.0)])
    assert tracker.tick(1.0) == []
    feed(tracker, [(EPC_A, IN, 1.5)])  # read again: the pass goes on
    assert tracker.tick(3.4) == []
    done = only(tracker.tick(3.5))
    assert done.first_seen_us == T0_US
    assert done.last_seen_us == T0_US + 1_500_000
    assert tracker.tick(100.0) == []


def test_departure_uses_host_clock_not_reader_clock() -> None:
    tracker = PassTracker(portal())
    # The reader's clock is an hour behind the host: passes still end on time.
    late = TagRead(
        reader="dock1",
        epc_hex=EPC_A,
        antenna=OUT,
        rssi=None,
        first_seen_us=T0_US - 3_600_000_000,
        last_seen_us=T0_US - 3_600_000_000,
    )
    assert tracker.observe(late, 0.0)
    assert tracker.tick(1.0) == []
    assert len(tracker.tick(2.0)) == 1


def test_interleaved_tags_are_tracked_apart() -> None:
    tracker = PassTracker(portal())
    a = sweep(EPC_A, OUT, IN, 0.0)
    b = sweep(EPC_B, IN, OUT, 0.05)
    feed(tracker, sorted(a + b, key=lambda r: r[2]))
    assert len(tracker) == 2
    passes = {p.epc_hex: p for p in tracker.tick(10.0)}
    assert passes[EPC_A].direction == "in"
    assert passes[EPC_B].direction == "out"
    assert passes[EPC_A].count == passes[EPC_B].count == 10


def test_max_tracked_ends_least_recently_read_pass_early() -> None:
    tracker = PassTracker(portal(), max_tracked=3)
    tags = [f"{n:024x}" for n in range(1, 5)]
    feed(tracker, [(tags[0], OUT, 0.0), (tags[1], OUT, 0.1), (tags[2], OUT, 0.2)])
    feed(tracker, [(tags[0], IN, 0.3)])  # tags[1] is now the least recently read
    feed(tracker, [(tags[3], OUT, 0.4)])
    assert len(tracker) == 3
    assert tracker.evicted == 1
    early = tracker.tick(0.5)  # nobody timed out: only the evicted pass comes out
    assert [p.epc_hex for p in early] == [tags[1]]


def test_reads_on_other_antennas_are_not_taken() -> None:
    tracker = PassTracker(portal())
    assert not tracker.observe(read(EPC_A, 7, 0.0), 0.0)
    assert len(tracker) == 0
    assert tracker.tick(10.0) == []


def test_long_pass_is_split() -> None:
    tracker = PassTracker(portal(), max_pass_s=10.0)
    feed(tracker, [(EPC_A, IN, float(s)) for s in range(13)])
    first = only(tracker.tick(12.0))
    assert first.count == 10  # reads at 0..9 s; the read at 10 s began a new pass
    second = only(tracker.tick(20.0))
    assert second.count == 3


def test_drain_ends_every_open_pass() -> None:
    tracker = PassTracker(portal())
    feed(tracker, sweep(EPC_A, OUT, IN, 0.0) + sweep(EPC_B, IN, OUT, 0.0))
    assert {p.epc_hex for p in tracker.drain()} == {EPC_A, EPC_B}
    assert len(tracker) == 0


def test_seen_count_weights_and_rssi_peak() -> None:
    tracker = PassTracker(portal())
    aggregated = TagRead(
        reader="dock1",
        epc_hex=EPC_A,
        antenna=OUT,
        rssi=-44.0,
        first_seen_us=T0_US,
        last_seen_us=T0_US + 200_000,
        seen_count=4,
    )
    tracker.observe(aggregated, 0.0)
    tracker.observe(read(EPC_A, IN, 0.8, rssi=-41.5), 0.8)
    tracker.observe(read(EPC_A, IN, 0.9, rssi=120.0), 0.9)  # a reader quirk, not evidence
    done = only(tracker.tick(10.0))
    assert done.count == 6
    assert done.peak_rssi == -41.5
    assert done.direction == "in"


def test_pass_becomes_event() -> None:
    tracker = PassTracker(portal())
    feed(tracker, sweep(EPC_A, OUT, IN, 0.0))
    event = only(tracker.tick(10.0)).to_event("gw-1:00112233:7")
    assert event.event_id == "gw-1:00112233:7"
    assert event.epc == "urn:epc:id:sgtin:0614141.107346.2017"
    assert event.biz_step == "receiving"
    assert event.action == "OBSERVE"
    assert event.read_point == "wh1.dock.1"
    assert event.direction == "in"
    assert event.source == "llrp"
    assert event.event_time == datetime.fromtimestamp(T0_US / 1e6 + 0.9, UTC).replace(
        microsecond=900_000
    )
    assert event.reads is not None
    assert event.reads.count == 10
    assert event.reads.antennas == [OUT, IN]
    assert event.reads.peak_rssi == -55.0
    assert event.reads.last_seen == event.event_time
    assert event.reads.first_seen < event.reads.last_seen


def test_unknown_encoding_travels_as_raw_urn() -> None:
    tracker = PassTracker(portal())
    feed(tracker, [("e2801160600002054cc2090b", IN, 0.0)])
    event = only(tracker.tick(10.0)).to_event("gw-1:00112233:1")
    assert event.epc is not None
    assert event.epc.startswith("urn:epc:")
    assert event.biz_step == BIZ_STEPS[None] == "other"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((5, 5 * 100, 5, 5 * 900, 0, 1000, 2), "in"),
        ((5, 5 * 900, 5, 5 * 100, 0, 1000, 2), "out"),
        ((5, 5 * 500, 5, 5 * 510, 0, 1000, 2), None),  # centroids 1% apart
        ((1, 0, 1, 0, 0, 0, 2), None),  # no time spread at all
        ((0, 0, 9, 900, 0, 1000, 2), None),
    ],
)
def test_judge(args: tuple[int, int, int, int, int, int, int], expected: str | None) -> None:
    direction, confidence = judge(*args)
    assert direction == expected
    assert 0 <= confidence <= 1
    assert (confidence > 0) == (expected is not None)
