"""Read point modes and filters, pure: portal dwell, zones, cooldown de-duplication,
software filters, photo-eye windows and the routing between them (no I/O, no sleeping)."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import (
    DedupeSettings,
    EdgeSettings,
    PortalSettings,
    ReadFilterSettings,
    ZoneSettings,
)
from edge.dedupe import CooldownDeduper
from edge.filters import ReadFilter, read_filter
from edge.pipeline import PassTracker
from edge.readers.types import GpiChanged, TagRead
from edge.readpoints import ReadPoints, gpi_ports
from edge.windows import ReadWindow
from edge.zones import ZoneTracker
from wire.identifiers import sgtin96_hex

EPC = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.1")
OTHER = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.2")
T0 = 1_700_000_000_000_000


def read(epc: str, antenna: int, at_s: float, rssi: float | None = -50.0) -> TagRead:
    us = T0 + round(at_s * 1_000_000)
    return TagRead("dock1", epc, antenna, rssi, us, us)


def portal(**values: Any) -> PortalSettings:
    base: dict[str, Any] = {
        "read_point": "wh1.dock.1",
        "reader": "dock1",
        "outside_antennas": [1],
        "inside_antennas": [2],
        "departure_timeout_s": 2.0,
        "max_dwell_s": 10.0,
    }
    return PortalSettings(**(base | values))


# --- portal: tags parked in the doorway ------------------------------------------------------


def parked_reads() -> list[TagRead]:
    """30 s in the doorway, read by both sides all along; the outside reads it more at
    first and the inside more later, so the centroids alone would say "in"."""
    reads = []
    for step in range(60):
        t = step * 0.5
        heavy, light = (1, 2) if step < 20 else (2, 1)
        reads.append(read(EPC, heavy, t))
        if step % 4 == 0:
            reads.append(read(EPC, light, t))
    return reads


def test_a_tag_read_on_both_sides_longer_than_max_dwell_gets_no_direction() -> None:
    lenient = PassTracker(portal(max_dwell_s=100.0))
    tracker = PassTracker(portal())
    for tag_read in parked_reads():
        t = (tag_read.first_seen_us - T0) / 1e6
        lenient.observe(tag_read, t)
        tracker.observe(tag_read, t)
    (without_dwell,) = lenient.tick(1000.0)
    assert without_dwell.direction == "in", "the test must be one the dwell rule decides"
    (ended,) = tracker.tick(1000.0)
    assert ended.direction is None
    assert ended.confidence == 0.0
    assert ended.reason == "parked"
    event = ended.to_event("gw:ab12cd34:1")
    assert event.reads is not None
    assert event.reads.reason == "parked"
    assert event.reads.outside_count == ended.outside_count
    assert event.reads.inside_count == ended.inside_count
    assert (ended.outside_count or 0) + (ended.inside_count or 0) == len(parked_reads())


def test_a_pallet_that_waits_on_one_side_then_crosses_keeps_its_direction() -> None:
    tracker = PassTracker(portal())
    # 20 s waiting outside (only the outside antenna reads it), then through the door.
    for step in range(40):
        tracker.observe(read(EPC, 1, step * 0.5), step * 0.5)
    for step in range(6):
        t = 20.0 + step * 0.2
        tracker.observe(read(EPC, 2, t), t)
    (ended,) = tracker.tick(1000.0)
    assert ended.direction == "in"
    assert ended.reason is None
    assert ended.outside_count == 40
    assert ended.inside_count == 6


@pytest.mark.parametrize(
    ("antennas", "reason"),
    [((1, 1, 1), "one_side"), ((1,), "too_few_reads"), ((1, 2, 2, 1), "no_separation")],
)
def test_a_pass_without_direction_says_why(antennas: tuple[int, ...], reason: str) -> None:
    tracker = PassTracker(portal(min_reads=2))
    for step, antenna in enumerate(antennas):
        tracker.observe(read(EPC, antenna, step * 0.1), step * 0.1)
    (ended,) = tracker.tick(100.0)
    assert ended.direction is None
    assert ended.reason == reason


# --- zones -------------------------------------------------------------------------------------


def zone(**values: Any) -> ZoneSettings:
    base: dict[str, Any] = {
        "read_point": "wh1.aisle.3.shelf.2",
        "location": "wh1.aisle.3.bin.2",
        "reader": "dock1",
        "antennas": [3, 4],
        "departure_timeout_s": 5.0,
        "min_reads": 2,
    }
    return ZoneSettings(**(base | values))


def test_a_zone_reports_arrival_after_min_reads_and_departure_after_the_timeout() -> None:
    tracker = ZoneTracker(zone())
    assert not tracker.observe(read(EPC, 1, 0.0), 0.0), "antenna 1 is not the zone's"
    assert tracker.observe(read(EPC, 3, 0.0), 0.0)
    assert tracker.tick(0.1) == [], "one read is not an arrival yet"
    tracker.observe(read(EPC, 4, 1.0, rssi=-40.0), 1.0)
    (arrived,) = tracker.tick(1.1)
    assert (arrived.kind, arrived.biz_step, arrived.count) == ("arrive", "arriving", 2)
    event = arrived.to_event("gw:ab12cd34:1")
    assert event.biz_location == "wh1.aisle.3.bin.2"
    unplaced = ZoneTracker(zone(location=None, min_reads=1))
    unplaced.observe(read(EPC, 3, 0.0), 0.0)
    (only,) = unplaced.tick(0.1)
    assert only.to_event("gw:ab12cd34:3").biz_location is None, "the server decides"
    assert event.direction is None
    for t in (2.0, 3.0, 4.0):
        tracker.observe(read(EPC, 3, t), t)
    assert tracker.tick(8.9) == [], "read at 4.0: departs at 9.0"
    (departed,) = tracker.tick(9.0)
    assert (departed.kind, departed.biz_step, departed.count) == ("depart", "departing", 5)
    assert departed.antennas == (3, 4)
    assert departed.peak_rssi == -40.0
    assert departed.last_seen_us == T0 + 4_000_000
    assert departed.to_event("gw:ab12cd34:2").biz_location is None
    assert len(tracker) == 0


def test_a_stray_read_below_min_reads_makes_no_event_and_shutdown_departs_nobody() -> None:
    tracker = ZoneTracker(zone())
    tracker.observe(read(OTHER, 3, 0.0), 0.0)
    assert tracker.tick(10.0) == []
    assert tracker.strays == 1
    tracker.observe(read(EPC, 3, 11.0), 11.0)
    tracker.observe(read(EPC, 3, 11.5), 11.5)
    assert [e.kind for e in tracker.drain()] == ["arrive"]
    assert tracker.drain() == []
    assert len(tracker) == 1, "still on the shelf: no departure at shutdown"


def test_a_full_zone_departs_the_least_recently_read_tag() -> None:
    tracker = ZoneTracker(zone(min_reads=1), max_tracked=2)
    epcs = [sgtin96_hex(f"urn:epc:id:sgtin:0614141.107346.{n}") for n in range(1, 4)]
    for i, epc in enumerate(epcs):
        tracker.observe(read(epc, 3, float(i)), float(i))
    events = tracker.tick(2.5)
    assert [(e.kind, e.epc_hex) for e in events if e.kind == "depart"] == [("depart", epcs[0])]
    assert tracker.evicted == 1
    assert len(tracker) == 2


# --- cooldown de-duplication ------------------------------------------------------------------


def dedupe(**values: Any) -> DedupeSettings:
    base: dict[str, Any] = {"read_point": "wh1.conveyor.1", "reader": "dock1", "cooldown_s": 5.0}
    return DedupeSettings(**(base | values))


def test_dedupe_per_epc_makes_one_event_per_cooldown() -> None:
    deduper = CooldownDeduper(dedupe())
    for t in (0.0, 0.5, 1.0, 4.9):
        assert deduper.observe(read(EPC, 1 + int(t) % 2, t), t)
    first = deduper.tick(4.95)
    assert len(first) == 1
    assert first[0].to_event("gw:ab12cd34:1").biz_step == "other"
    assert deduper.suppressed == 3
    # The cooldown counts from the event, so a tag that stays is reported again.
    deduper.observe(read(EPC, 1, 5.0), 5.0)
    assert len(deduper.tick(5.1)) == 1
    assert deduper.emitted == 2


def test_dedupe_per_epc_and_antenna_keeps_antennas_apart() -> None:
    deduper = CooldownDeduper(dedupe(per="epc_antenna", antennas=[1, 2], biz_step="inspecting"))
    for t, antenna in ((0.0, 1), (0.1, 2), (0.2, 1), (0.3, 2), (0.4, 3)):
        deduper.observe(read(EPC, antenna, t), t)
    events = deduper.tick(1.0)
    assert sorted(e.antenna for e in events) == [1, 2]
    assert {e.to_event("gw:ab12cd34:9").biz_step for e in events} == {"inspecting"}
    assert deduper.suppressed == 2


def test_dedupe_forgets_cooldowns_that_ran_out() -> None:
    deduper = CooldownDeduper(dedupe(cooldown_s=1.0), max_keys=2)
    for n in range(5):
        deduper.observe(read(sgtin96_hex(f"urn:epc:id:sgtin:0614141.107346.{n + 1}"), 1, 0), 0.0)
    assert len(deduper._last) == 2, "bounded"
    deduper.tick(2.0)
    assert len(deduper._last) == 0


# --- software filters ---------------------------------------------------------------------------


def test_filters_prefixes_and_rssi_per_antenna() -> None:
    settings = ReadFilterSettings(
        include=["3034", "E280"],
        exclude=["3034257BF7194E4000001A8"],
        min_rssi=-70.0,
        min_rssi_by_antenna={2: -55.0},
    )
    check = ReadFilter(settings)
    assert check.admits(read("30340000", 1, 0, rssi=-60))
    assert check.admits(read("e2801160", 1, 0, rssi=-69.5)), "prefixes compare in lower case"
    assert not check.admits(read("3074257b", 1, 0)), "not included"
    assert not check.admits(read("3034257bf7194e4000001a85", 1, 0)), "excluded wins"
    assert not check.admits(read("30340000", 1, 0, rssi=-71))
    assert not check.admits(read("30340000", 2, 0, rssi=-60)), "antenna 2 has its own threshold"
    assert check.admits(read("30340000", 2, 0, rssi=-50))
    assert check.admits(read("30340000", 2, 0, rssi=None)), "no RSSI: kept"
    assert check.dropped == {"prefix": 2, "rssi": 2}


def test_no_filter_configured_means_no_filter_object() -> None:
    assert read_filter(ReadFilterSettings()) is None
    assert read_filter(ReadFilterSettings(min_rssi=-80)) is not None


def test_filter_config_refuses_what_is_not_hex() -> None:
    with pytest.raises(ValueError, match="include"):
        ReadFilterSettings(include=["30zz"])
    with pytest.raises(ValueError, match="epc_mask"):
        edge_settings(llrp=[{"name": "dock1", "host": "127.0.0.1", "epc_mask": "xyz"}])


# --- photo-eye windows ---------------------------------------------------------------------------


def test_a_window_admits_reads_between_high_and_low_plus_tail() -> None:
    window = ReadWindow("wh1.dock.1", tail_s=1.0, max_open_s=60.0)
    assert not window.admit(0.0), "closed: the photo-eye has not fired"
    window.gpi(True, 1.0)
    assert window.admit(1.5)
    window.gpi(False, 2.0)
    assert window.admit(2.9), "tail"
    assert window.tick(2.95) is None
    assert not window.admit(3.0)
    closed = window.tick(3.0)
    assert closed is not None
    assert (closed.reads, closed.unread, closed.length_s) == (2, False, 2.0)
    window.gpi(True, 5.0)
    window.gpi(False, 5.5)
    window.gpi(True, 6.0)  # blocked again within the tail: the same window
    window.gpi(False, 6.5)
    assert window.tick(7.4) is None
    closed = window.tick(7.5)
    assert closed is not None
    assert closed.unread
    assert (window.windows, window.unread) == (2, 1)


def test_a_blocked_photo_eye_is_reported_and_a_reconnect_closes_its_window() -> None:
    window = ReadWindow("wh1.dock.1", tail_s=0.5, max_open_s=10.0)
    window.gpi(True, 0.0)
    assert window.stuck(5.0) is None
    assert window.stuck(11.0) == 11.0
    window.reset(12.0)
    closed = window.tick(12.0)
    assert closed is not None
    assert closed.unread
    assert window.stuck(13.0) is None


# --- routing ------------------------------------------------------------------------------------


def edge_settings(**values: Any) -> EdgeSettings:
    base: dict[str, Any] = {
        "gateway": {"id": "gw-1", "site": "wh1"},
        "llrp": [{"name": "dock1", "host": "127.0.0.1", "filter": {"min_rssi": -70.0}}],
    }
    return EdgeSettings(**(base | values))


def test_one_reader_serves_a_windowed_portal_a_zone_and_a_dedupe_point() -> None:
    settings = edge_settings(
        portals=[portal(gpi_port=2, gpi_window=True, gpi_tail_s=0.5).model_dump()],
        zones=[zone(antennas=[3], min_reads=1).model_dump()],
        dedupe=[dedupe(antennas=[4]).model_dump()],
    )
    assert gpi_ports(settings) == {"dock1": [2]}
    points = ReadPoints(settings)
    assert points.read("dock1", read(EPC, 1, 0.0), 0.0), "the portal's antenna, window closed"
    assert points.outside_window["wh1.dock.1"] == 1
    assert points.read("dock1", read(EPC, 3, 0.0), 0.0)
    assert points.read("dock1", read(EPC, 4, 0.0), 0.0)
    assert points.read("dock1", read(EPC, 4, 0.0, rssi=-80.0), 0.0), "filtered, not ignored"
    assert points.filtered["dock1"] == 1
    assert not points.read("dock1", read(EPC, 5, 0.0), 0.0), "nobody uses antenna 5"
    assert not points.read("other", read(EPC, 1, 0.0), 0.0)
    points.reader_event(GpiChanged("dock1", 2, high=True), 1.0)
    for step in range(4):
        t = 1.0 + step * 0.1
        points.read("dock1", read(OTHER, 1 if step < 2 else 2, t), t)
    points.reader_event(GpiChanged("dock1", 2, high=False), 1.5)
    finished = points.tick(10.0)
    kinds = sorted((f.read_point, type(f).__name__) for f in finished)
    assert kinds == [
        ("wh1.aisle.3.shelf.2", "ZoneEvent"),
        ("wh1.aisle.3.shelf.2", "ZoneEvent"),
        ("wh1.conveyor.1", "Sighting"),
        ("wh1.dock.1", "Pass"),
    ]
    (passed,) = [f for f in finished if f.read_point == "wh1.dock.1"]
    assert passed.epc_hex == OTHER, "the read before the window did not count"
    assert points.events[("wh1.dock.1", "in")] == 1
    assert points.unread_windows == {}
    # An empty window: a pallet went through unread.
    points.reader_event(GpiChanged("dock1", 2, high=True), 20.0)
    points.reader_event(GpiChanged("dock1", 2, high=False), 21.0)
    points.tick(22.0)
    assert points.unread_windows["wh1.dock.1"] == 1
    (issue,) = points.issues.issues(22.0)
    assert (issue.kind, issue.subject, issue.count) == ("unread_window", "wh1.dock.1", 1)


def test_config_refuses_a_read_point_twice_and_unknown_readers() -> None:
    with pytest.raises(ValueError, match="more than once"):
        edge_settings(
            portals=[portal().model_dump()],
            zones=[zone(read_point="wh1.dock.1").model_dump()],
        )
    with pytest.raises(ValueError, match="no \\[\\[llrp\\]\\] defines"):
        edge_settings(zones=[zone(reader="nope").model_dump()])
    with pytest.raises(ValueError, match="gpi_window needs gpi_port"):
        portal(gpi_window=True)
    with pytest.raises(ValueError, match="own ports"):
        portal(lights={"accepted": 1, "unexpected": 1})
