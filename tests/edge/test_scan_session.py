"""ScanSession: a scanner's location and mode, and the events its scans make."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

import pytest

from edge.config import ScannerSettings
from edge.readers.types import ScanRead
from edge.scanning import ScanEvent, ScanSession
from wire.barcodes import parse_barcode
from wire.models import Event, Quantity
from wire.scans import Command, CommandScan, ItemScan, LocationScan, Scan

GTIN_A = "09506000016924"
GTIN_B = "05901234123457"
T0 = 1_795_000_000_000_000
_clock = itertools.count(T0, 1000)


def session(**extra: Any) -> ScanSession:
    values: dict[str, Any] = {"name": "hand-1", "port": "/dev/ttyACM0", "read_point": "wh1.aisle.3"}
    values.update(extra)
    return ScanSession(ScannerSettings(**values))


def read(scan: Scan) -> ScanRead:
    return ScanRead("hand-1", scan, b"raw", next(_clock))


def loc(location: str) -> ScanRead:
    return read(LocationScan(location))


def cmd(command: Command) -> ScanRead:
    return read(CommandScan(command))


def item(gtin: str = GTIN_A, **fields: Any) -> ScanRead:
    return read(ItemScan(gtin, **fields))


def run(s: ScanSession, *reads: ScanRead) -> tuple[list[ScanEvent], list[str]]:
    events: list[ScanEvent] = []
    notices: list[str] = []
    for r in reads:
        outcome = s.handle(r)
        events += outcome.events
        if outcome.notice is not None:
            notices.append(outcome.notice)
    return events, notices


def wire(event: ScanEvent, n: int = 1) -> Event:
    return event.to_event(f"gw-1:00ff00ff:{n}")


def test_receive_is_the_default_and_records_where_and_what() -> None:
    s = session()
    scan = item(lot="L1", expiry=date(2027, 5, 31), qty=6)
    [event], notices = run(s, scan)
    assert notices == []
    e = wire(event)
    assert (e.biz_step, e.direction, e.action, e.source) == ("receiving", "in", "OBSERVE", "serial")
    # No location scanned: the event names none (the server takes the inbound location).
    assert (e.read_point, e.biz_location, e.source_location) == ("wh1.aisle.3", None, None)
    assert e.quantity == Quantity(gtin=GTIN_A, lot="L1", expiry=date(2027, 5, 31), qty=6)
    assert int(e.event_time.timestamp() * 1000) == scan.seen_us // 1000


def test_location_labels_and_modes_shape_the_events() -> None:
    s = session()
    events, notices = run(
        s,
        loc("wh1.aisle.3.bin.1"),
        item(),
        cmd(Command.PICK),
        item(GTIN_B),
        cmd(Command.MOVE),
        item(serial="S1"),
        loc("wh1.aisle.9"),
    )
    assert notices == []
    shapes = [
        (e.biz_step, e.direction, e.source_location, e.biz_location) for e in map(wire, events)
    ]
    assert shapes == [
        ("receiving", "in", None, "wh1.aisle.3.bin.1"),
        ("picking", "out", None, "wh1.aisle.3.bin.1"),
        ("storing", None, "wh1.aisle.3.bin.1", "wh1.aisle.9"),
    ]
    assert (s.mode, s.location) == ("move", "wh1.aisle.9")


def test_a_move_is_source_items_destination_and_sent_at_the_destination() -> None:
    s = session(default_mode="move")
    early, notices = run(s, item())
    assert early == []
    assert notices == ["scan the source location first: a move needs one"]
    events, notices = run(s, loc("wh1.a.1"), item(qty=12), item(GTIN_B), loc("wh1.a.1"))
    assert events == []
    assert notices == ["wh1.a.1 is where the 2 held items come from: scan the destination"]
    assert s.held_items == 2
    destination = loc("wh1.b.2")
    events, notices = run(s, destination)
    assert notices == []
    sent = [wire(e, n) for n, e in enumerate(events, 1)]
    assert [(e.source_location, e.biz_location, e.quantity) for e in sent] == [
        ("wh1.a.1", "wh1.b.2", Quantity(gtin=GTIN_A, qty=12)),
        ("wh1.a.1", "wh1.b.2", Quantity(gtin=GTIN_B)),
    ]
    assert {e.event_time for e in sent} == {sent[0].event_time}
    assert int(sent[0].event_time.timestamp() * 1000) == destination.seen_us // 1000
    # The next location starts a new move; a mode switch drops held items, and says so.
    _, notices = run(s, loc("wh1.b.3"), item(), cmd(Command.RECEIVE))
    assert notices == [
        "move from wh1.b.3 abandoned (mode switched to receive before its destination): "
        "1 items, 1 units not sent"
    ]


SSCC_LABEL = "]C100106141412345678908"
SSCC_LINK = "]Q1https://id.gs1.org/00/106141412345678908"
SSCC_EPC = "urn:epc:id:sscc:0614141.1234567890"


def pallet(text: str = SSCC_LABEL) -> ScanRead:
    return read(parse_barcode(text))


def test_a_pallet_label_is_received_moved_and_picked_as_its_epc() -> None:
    s = session()
    events, notices = run(
        s,
        loc("wh1.a.1"),
        pallet(),
        cmd(Command.MOVE),
        pallet(SSCC_LINK),
        item(qty=2),
        loc("wh1.b.2"),
        cmd(Command.PICK),
        loc("wh1.b.2"),
        pallet(SSCC_LINK),
    )
    assert notices == []
    sent = [wire(e, n) for n, e in enumerate(events, 1)]
    assert [
        (e.biz_step, e.direction, e.source_location, e.biz_location, e.epc, e.quantity)
        for e in sent
    ] == [
        ("receiving", "in", None, "wh1.a.1", SSCC_EPC, None),
        ("storing", None, "wh1.a.1", "wh1.b.2", SSCC_EPC, None),
        ("storing", None, "wh1.a.1", "wh1.b.2", None, Quantity(gtin=GTIN_A, qty=2)),
        ("picking", "out", None, "wh1.b.2", SSCC_EPC, None),
    ]
    assert {e.source for e in sent} == {"serial"}


def test_a_pallet_label_is_not_counted_and_a_held_pallet_is_reported() -> None:
    s = session()
    events, notices = run(s, cmd(Command.COUNT), loc("wh1.a.1"), pallet(), cmd(Command.END))
    assert notices == [
        "SSCC 106141412345678908 is a pallet label: a count is of items, scan its cases"
    ]
    assert wire(events[0]).quantities == []
    _, notices = run(s, cmd(Command.MOVE), pallet(), cmd(Command.PICK))
    assert notices == [
        "move from wh1.a.1 abandoned (mode switched to pick before its destination): "
        "1 items, 1 units not sent"
    ]


def test_a_configured_source_makes_every_location_a_destination() -> None:
    s = session(default_mode="move", move_from="wh1.receiving")
    _, notices = run(s, item())
    assert notices == ["scan the destination location first: a put-away needs one"]
    events, notices = run(s, loc("wh1.a.1"), item(), loc("wh1.a.2"), item(GTIN_B))
    assert notices == []
    assert [(e.source_location, e.biz_location) for e in map(wire, events)] == [
        ("wh1.receiving", "wh1.a.1"),
        ("wh1.receiving", "wh1.a.2"),
    ]


def test_a_configured_location_is_where_the_scanner_works_until_one_is_scanned() -> None:
    s = session(location="wh1.station.4")
    [received], _ = run(s, item())
    assert wire(received).biz_location == "wh1.station.4"
    [count], _ = run(s, cmd(Command.COUNT), item(), cmd(Command.END))
    assert wire(count).biz_location == "wh1.station.4"


def test_a_count_needs_a_location() -> None:
    s = session(default_mode="count")
    events, notices = run(s, item(), cmd(Command.END))
    assert events == []
    assert notices == [
        "scan the location label first: a count needs its location",
        "END scanned before a location label: nothing counted",
    ]


def test_a_count_becomes_one_event_listing_everything_seen() -> None:
    s = session()
    events, notices = run(
        s,
        cmd(Command.COUNT),
        loc("wh1.aisle.3.bin.2"),
        item(),
        item(),
        item(qty=10),
        item(lot="L2"),
        item(GTIN_B, serial="S1"),
        item(GTIN_B, serial="S2"),
        item(GTIN_B, serial="S1"),  # a double scan of one unit
    )
    assert events == []
    assert notices == [f"serial S1 of GTIN {GTIN_B} scanned twice: counted once"]
    assert s.counted_lines == 4
    end = cmd(Command.END)
    [count], notices = run(s, end)
    assert notices == []
    e = wire(count)
    assert (e.biz_step, e.action, e.direction) == ("cycle_counting", "OBSERVE", None)
    assert e.biz_location == "wh1.aisle.3.bin.2"
    assert (e.quantity, e.epc) == (None, None)
    assert e.quantities is not None
    assert {(q.gtin, q.lot, q.serial, q.qty) for q in e.quantities} == {
        (GTIN_A, None, None, 12),
        (GTIN_A, "L2", None, 1),
        (GTIN_B, None, "S1", 1),
        (GTIN_B, None, "S2", 1),
    }
    assert int(e.event_time.timestamp() * 1000) == end.seen_us // 1000
    # Still counting: the next END closes a new, empty count of the same location.
    [empty], _ = run(s, cmd(Command.END))
    assert wire(empty).quantities == []
    assert s.mode == "count"


def test_a_count_left_without_end_is_abandoned_and_said_so() -> None:
    s = session(default_mode="count", location="wh1.aisle.3")
    events, notices = run(s, item(), item(GTIN_B), loc("wh1.b"), item(), cmd(Command.RECEIVE))
    assert events == []
    assert notices == [
        "count at wh1.aisle.3 abandoned (location wh1.b scanned before END): 2 lines, 2 units "
        "not sent",
        "count at wh1.b abandoned (mode switched to receive before END): 1 lines, 1 units not sent",
    ]
    assert s.counted_lines == 0


def test_count_command_during_a_count_keeps_it_and_end_outside_is_refused() -> None:
    s = session()
    _, notices = run(s, cmd(Command.END))
    assert notices == ["END scanned in receive mode, not in a count: ignored"]
    events, notices = run(
        s, cmd(Command.COUNT), loc("wh1.a"), item(), cmd(Command.COUNT), cmd(Command.END)
    )
    assert notices == []
    [count] = events
    assert count.quantities is not None
    assert [q.qty for q in count.quantities] == [1]


def test_a_count_is_bounded_in_lines() -> None:
    s = ScanSession(
        ScannerSettings(
            name="h", port="/dev/x", read_point="wh1.a", default_mode="count", location="wh1.a"
        ),
        max_lines=2,
    )
    _, notices = run(s, item(lot="1"), item(lot="2"), item(lot="3"), item(lot="1"))
    assert len(notices) == 1
    assert "holds 2 lines" in notices[0]
    [count], _ = run(s, cmd(Command.END))
    assert count.quantities is not None
    assert sorted((q.lot, q.qty) for q in count.quantities) == [("1", 2), ("2", 1)]
    with pytest.raises(ValueError, match="max_lines"):
        ScanSession(ScannerSettings(name="h", port="/dev/x", read_point="wh1.a"), max_lines=0)


def test_a_count_line_total_is_bounded() -> None:
    s = session(default_mode="count", location="wh1.a")
    _, notices = run(s, item(qty=999_999), item(qty=2))
    assert notices == [f"count of GTIN {GTIN_A} would exceed 1000000: scan not counted"]


def test_a_serialized_item_is_sent_as_its_unit_outside_a_count() -> None:
    # GTIN 80614141123458 (company prefix 0614141 by GS1's table) with serial 7 is the
    # SGTIN its tag reads as; the same label in a count stays a count line.
    s = session()
    events, notices = run(
        s,
        loc("wh1.a.1"),
        item("80614141123458", serial="7", lot="L1"),
        cmd(Command.PICK),
        item("80614141123458", serial="7"),
        cmd(Command.COUNT),
        item("80614141123458", serial="8"),
        cmd(Command.END),
    )
    assert notices == []
    receive, pick, count = (wire(e, n) for n, e in enumerate(events, 1))
    assert (receive.epc, receive.quantity, receive.biz_step) == (
        "urn:epc:id:sgtin:0614141.812345.7",
        None,
        "receiving",
    )
    assert (pick.epc, pick.biz_step) == ("urn:epc:id:sgtin:0614141.812345.7", "picking")
    assert count.quantities == [Quantity(gtin="80614141123458", serial="8")]
