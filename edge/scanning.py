"""What a handheld scanner's scans mean: one ``ScanSession`` per scanner, pure.

A session holds the scanner's current location (none until a location label is scanned,
or its configured ``location``) and its mode (``default_mode``, receive unless configured,
until a command barcode switches it). It outlives reconnects: a scanner unplugged in the
middle of a count keeps its count when it is plugged back.

One meaning per scan, the same here, in the server's rules (``server.rules.steps`` and
``server.rules.stock``), in the simulator's ground truth and in the README. Item scans
become events by mode (``MODE_STEPS``, CBV business steps):

- receive: ``receiving``, direction ``in``: the goods arrive at the current location. The
  event names it as ``biz_location``; with no location scanned it names none and the
  server receives into the read point's ``inbound_location``.
- pick: ``picking``, direction ``out``: the goods are taken from the current location
  (``biz_location``; none scanned: the read point's ``inbound_location``) to the site's
  pick zone, to fill an order.
- move: ``storing``, no direction: the goods go from a source location to a destination
  (EPCIS ``source_location`` and ``biz_location``). Scan the source location, the items,
  then the destination location: the items are held until the destination is scanned and
  then sent, one event each, at the destination scan's time. The location current when
  move mode starts is the source; after a move the next location scanned is a new source.
  With ``move_from`` configured (put-away from a receiving area) every location scanned is
  a destination and each item scanned after it moves at once.
- count: nothing is sent per scan. ``CMD:END`` closes the count into one
  ``cycle_counting`` event whose ``quantities`` list every item seen at the location: one
  line per GTIN, lot, serial and expiry, with counts summed. A serial number scanned twice
  is one unit (a double scan), not two. ``CMD:END`` with nothing scanned sends an empty
  list: the location was counted and found empty. A count needs its location: item scans
  before one is scanned (or configured) are refused with a notice.

An item label with a serial number (AI 21) is a unit: in receive, pick and move mode its
event carries the unit's SGTIN (``epc``, as its RFID tag reads; company prefix length from
biip) instead of a quantity, so the server moves the unit wherever it is. (A count lists
serials as lines, which the server matches to units.)

A pallet label (an SSCC, AI 00, or its Digital Link URI) is scanned like an item in receive,
pick and move mode: the event carries the pallet's EPC pure identity (``epc``,
``urn:epc:id:sscc:...``) instead of a quantity, and the server moves the pallet's contents
as it knows them (``server.commands.pallets``). A count is of items, so a pallet label in count mode
is refused with a notice (count its cases).

Every event names the scanner's configured ``read_point``; its time is the scan's (the END
scan's for a count, the destination scan's for a move).

An open count with lines in it, or a move holding items, is abandoned, and said so, when a
mode command arrives first (and a count also when another location label does): sending it
would report everything not yet scanned at that location as gone, or move goods to a place
nobody scanned. ``CMD:COUNT`` during a count changes nothing. ``CMD:END`` outside a count, a
count that would outgrow ``MAX_COUNT_LINES`` lines and a move holding as many items are
rejected with a notice. Notices are for the scanner's health and log; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

from edge.config import ScannerSettings
from edge.readers.types import ScanRead
from wire.identifiers import sgtin_urn
from wire.models import COUNT_STEP, MAX_COUNT_LINES, Direction, Event, Quantity
from wire.scans import (
    MAX_QTY,
    MODE_OF,
    Command,
    CommandScan,
    ItemScan,
    LocationScan,
    Mode,
    PalletScan,
)

SOURCE: Final = "serial"


@dataclass(frozen=True, slots=True)
class ModeStep:
    """What an item scan in one mode means."""

    biz_step: str
    direction: Direction | None


MODE_STEPS: Final[dict[Mode, ModeStep]] = {
    "receive": ModeStep("receiving", "in"),
    "pick": ModeStep("picking", "out"),
    "move": ModeStep("storing", None),
}
"""The modes whose item scans are events of their own (count collects instead)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

LineKey = tuple[str, str | None, str | None, date | None]
"""(gtin, lot, serial, expiry): one line of a count."""


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """An event from a scanner, waiting for the outbox to give it an id."""

    read_point: str
    biz_location: str | None
    biz_step: str
    direction: Direction | None
    seen_us: int
    quantity: Quantity | None = None
    quantities: tuple[Quantity, ...] | None = None
    source_location: str | None = None
    epc: str | None = None
    """A pallet label's SSCC as an EPC URN (then ``quantity`` is None)."""

    def to_event(self, event_id: str) -> Event:
        """The wire event with id ``event_id``."""
        return Event(
            event_id=event_id,
            event_time=_EPOCH + timedelta(microseconds=self.seen_us),
            action="OBSERVE",
            biz_step=self.biz_step,
            read_point=self.read_point,
            biz_location=self.biz_location,
            source_location=self.source_location,
            epc=self.epc,
            quantity=self.quantity,
            quantities=list(self.quantities) if self.quantities is not None else None,
            direction=self.direction,
            source=SOURCE,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one scan did: events to store and, if something was refused or lost, a notice."""

    events: tuple[ScanEvent, ...] = ()
    notice: str | None = None


@dataclass(slots=True)
class _Count:
    location: str
    lines: dict[LineKey, Quantity] = field(default_factory=dict)


Held = Quantity | str
"""What a move holds until its destination: an item's quantity, or a pallet's EPC URN."""


@dataclass(slots=True)
class _Move:
    source: str | None
    items: list[Held] = field(default_factory=list)


def _epc(held: Held) -> str | None:
    return held if isinstance(held, str) else None


def _quantity(held: Held) -> Quantity | None:
    return None if isinstance(held, str) else held


def _units(held: Held) -> int:
    return 1 if isinstance(held, str) else held.qty


def _identity(item: ItemScan) -> Held:
    # A serialized item is a unit: its SGTIN, as its RFID tag would read (lot and expiry
    # are not part of a unit's identity). Without a known company prefix, a quantity.
    if item.serial is not None:
        urn = sgtin_urn(item.gtin, item.serial)
        if urn is not None:
            return urn
    return quantity(item)


def quantity(item: ItemScan) -> Quantity:
    """The wire quantity of an item scan."""
    return Quantity(
        gtin=item.gtin, lot=item.lot, serial=item.serial, qty=item.qty, expiry=item.expiry
    )


class ScanSession:
    """The state of one scanner: where it is, what mode it is in, the count or move it holds.

    Args:
        settings: the scanner's ``[[scanners]]`` table (read point, default mode, location).
        max_lines: most lines one count (or items one move) may hold.
    """

    def __init__(self, settings: ScannerSettings, *, max_lines: int = MAX_COUNT_LINES) -> None:
        if not 1 <= max_lines <= MAX_COUNT_LINES:
            raise ValueError(f"max_lines must be within 1..{MAX_COUNT_LINES}, got {max_lines}")
        self.scanner = settings.name
        self.read_point = settings.read_point
        self.location: str | None = settings.location
        """The scanned (or configured) location; None: the read point's inbound location."""
        self.move_from = settings.move_from
        self.mode: Mode = settings.default_mode
        self._max_lines = max_lines
        self._count: _Count | None = None
        self._move: _Move | None = None
        self._enter(self.mode)

    @property
    def counted_lines(self) -> int:
        """Lines in the open count (0 when not counting)."""
        return len(self._count.lines) if self._count is not None else 0

    @property
    def held_items(self) -> int:
        """Item scans a move holds until its destination is scanned."""
        return len(self._move.items) if self._move is not None else 0

    def handle(self, read: ScanRead) -> Outcome:
        """Apply one scan; returns the events it completes and any notice."""
        scan = read.scan
        if isinstance(scan, LocationScan):
            return self._locate(scan.location, read.seen_us)
        if isinstance(scan, CommandScan):
            return self._command(scan.command, read.seen_us)
        return self._item(scan, read.seen_us)

    def _enter(self, mode: Mode) -> None:
        self.mode = mode
        self._count = _Count(self.location) if mode == "count" and self.location else None
        self._move = _Move(self.location) if mode == "move" and self.move_from is None else None

    def _locate(self, location: str, seen_us: int) -> Outcome:
        move = self._move
        if move is not None:
            self.location = location
            if not move.items:
                move.source = location
                return Outcome()
            if location == move.source:
                return Outcome(
                    notice=f"{location} is where the {len(move.items)} held items come from: "
                    "scan the destination"
                )
            self._move = _Move(None)
            events = tuple(
                ScanEvent(
                    read_point=self.read_point,
                    biz_location=location,
                    source_location=move.source,
                    biz_step=MODE_STEPS["move"].biz_step,
                    direction=None,
                    seen_us=seen_us,
                    epc=_epc(line),
                    quantity=_quantity(line),
                )
                for line in move.items
            )
            return Outcome(events=events)
        notice = self._abandon(f"location {location} scanned")
        self.location = location
        if self.mode == "count":
            self._count = _Count(location)
        return Outcome(notice=notice)

    def _command(self, command: Command, seen_us: int) -> Outcome:
        if command is Command.END:
            if self.mode != "count":
                return Outcome(notice=f"END scanned in {self.mode} mode, not in a count: ignored")
            if self._count is None:
                return Outcome(notice="END scanned before a location label: nothing counted")
            count, self._count = self._count, _Count(self._count.location)
            lines = tuple(count.lines.values())
            event = ScanEvent(
                read_point=self.read_point,
                biz_location=count.location,
                biz_step=COUNT_STEP,
                direction=None,
                seen_us=seen_us,
                quantities=lines,
            )
            return Outcome(events=(event,))
        mode = MODE_OF[command]
        if mode == self.mode:
            return Outcome()
        notice = self._abandon(f"mode switched to {mode}")
        self._enter(mode)
        return Outcome(notice=notice)

    def _item(self, item: ItemScan | PalletScan, seen_us: int) -> Outcome:
        held: Held = item.epc if isinstance(item, PalletScan) else _identity(item)
        what = f"SSCC {item.sscc}" if isinstance(item, PalletScan) else f"GTIN {item.gtin}"
        if self.mode == "count":
            if self._count is None:
                return Outcome(notice="scan the location label first: a count needs its location")
            if isinstance(item, PalletScan):
                return Outcome(
                    notice=f"{what} is a pallet label: a count is of items, scan its cases"
                )
            return Outcome(notice=self._add(self._count, item))
        if self._move is not None:
            if self._move.source is None:
                return Outcome(notice="scan the source location first: a move needs one")
            if len(self._move.items) >= self._max_lines:
                return Outcome(
                    notice=f"a move holds {self._max_lines} items, the most it may: "
                    f"{what} not taken; scan the destination"
                )
            self._move.items.append(held)
            return Outcome()
        if self.mode == "move" and self.location is None:
            return Outcome(notice="scan the destination location first: a put-away needs one")
        step = MODE_STEPS[self.mode]
        event = ScanEvent(
            read_point=self.read_point,
            biz_location=self.location,
            source_location=self.move_from if self.mode == "move" else None,
            biz_step=step.biz_step,
            direction=step.direction,
            seen_us=seen_us,
            epc=_epc(held),
            quantity=_quantity(held),
        )
        return Outcome(events=(event,))

    def _add(self, count: _Count, item: ItemScan) -> str | None:
        key: LineKey = (item.gtin, item.lot, item.serial, item.expiry)
        line = count.lines.get(key)
        if line is None:
            if len(count.lines) >= self._max_lines:
                return (
                    f"count at {count.location} holds {self._max_lines} lines, the most one "
                    f"count may: GTIN {item.gtin} not counted; scan END and count on"
                )
            count.lines[key] = quantity(item)
            return None
        if item.serial is not None:
            return f"serial {item.serial} of GTIN {item.gtin} scanned twice: counted once"
        total = line.qty + item.qty
        if total > MAX_QTY:
            return f"count of GTIN {item.gtin} would exceed {MAX_QTY}: scan not counted"
        count.lines[key] = line.model_copy(update={"qty": total})
        return None

    def _abandon(self, why: str) -> str | None:
        move = self._move
        if move is not None and move.items:
            self._move = None
            units = sum(_units(line) for line in move.items)
            return (
                f"move from {move.source} abandoned ({why} before its destination): "
                f"{len(move.items)} items, {units} units not sent"
            )
        count = self._count
        if count is None or not count.lines:
            return None
        self._count = None
        units = sum(line.qty for line in count.lines.values())
        return (
            f"count at {count.location} abandoned ({why} before END): "
            f"{len(count.lines)} lines, {units} units not sent"
        )


__all__ = ["MODE_STEPS", "ModeStep", "Outcome", "ScanEvent", "ScanSession", "quantity"]
