"""What a handheld scanner's scans mean: one ``ScanSession`` per scanner, pure.

A session holds the scanner's current location (its ``read_point`` until a location label
is scanned) and its mode (``default_mode``, receive unless configured, until a command
barcode switches it). It outlives reconnects: a scanner unplugged in the middle of a count
keeps its count when it is plugged back.

Item scans become events by mode (``MODE_STEPS``, CBV business steps):

- receive: ``receiving``, direction ``in``: the goods arrive at the current location.
- pick: ``picking``, direction ``out``: the goods are taken from the current location
  to fill an order.
- move: ``storing``, no direction: the goods are put away at the current location (EPCIS
  ``biz_location`` is where they are after the event). Where they came from is not known
  to the scanner, so it claims no stock movement; the server records the sighting.
- count: nothing is sent per scan. ``CMD:END`` closes the count into one
  ``cycle_counting`` event whose ``quantities`` list every item seen at the location: one
  line per GTIN, lot, serial and expiry, with counts summed. A serial number scanned twice
  is one unit (a double scan), not two. ``CMD:END`` with nothing scanned sends an empty
  list: the location was counted and found empty.

Every event names the scanner's configured ``read_point`` and the current location as
``biz_location``; its time is the scan's (the END scan's for a count).

An open count with lines in it is abandoned, and said so, when a location label or a mode
command arrives before ``CMD:END``: sending it would report everything not yet scanned at
that location as gone. ``CMD:COUNT`` during a count changes nothing. ``CMD:END`` outside a
count, and a count that would outgrow ``MAX_COUNT_LINES`` lines, are rejected with a
notice. Notices are for the scanner's health and log; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

from edge.config import ScannerSettings
from edge.readers.types import ScanRead
from wire.barcodes import (
    MAX_QTY,
    MODE_OF,
    Command,
    CommandScan,
    ItemScan,
    LocationScan,
    Mode,
)
from wire.models import COUNT_STEP, MAX_COUNT_LINES, Direction, Event, Quantity

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
    biz_location: str
    biz_step: str
    direction: Direction | None
    seen_us: int
    quantity: Quantity | None = None
    quantities: tuple[Quantity, ...] | None = None

    def to_event(self, event_id: str) -> Event:
        """The wire event with id ``event_id``."""
        return Event(
            event_id=event_id,
            event_time=_EPOCH + timedelta(microseconds=self.seen_us),
            action="OBSERVE",
            biz_step=self.biz_step,
            read_point=self.read_point,
            biz_location=self.biz_location,
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


def quantity(item: ItemScan) -> Quantity:
    """The wire quantity of an item scan."""
    return Quantity(
        gtin=item.gtin, lot=item.lot, serial=item.serial, qty=item.qty, expiry=item.expiry
    )


class ScanSession:
    """The state of one scanner: where it is, what mode it is in, the count it holds.

    Args:
        settings: the scanner's ``[[scanners]]`` table (read point, default mode).
        max_lines: most lines one count may hold.
    """

    def __init__(self, settings: ScannerSettings, *, max_lines: int = MAX_COUNT_LINES) -> None:
        if not 1 <= max_lines <= MAX_COUNT_LINES:
            raise ValueError(f"max_lines must be within 1..{MAX_COUNT_LINES}, got {max_lines}")
        self.scanner = settings.name
        self.read_point = settings.read_point
        self.location = settings.read_point
        self.mode: Mode = settings.default_mode
        self._max_lines = max_lines
        self._count: _Count | None = _Count(self.location) if self.mode == "count" else None

    @property
    def counted_lines(self) -> int:
        """Lines in the open count (0 when not counting)."""
        return len(self._count.lines) if self._count is not None else 0

    def handle(self, read: ScanRead) -> Outcome:
        """Apply one scan; returns the events it completes and any notice."""
        scan = read.scan
        if isinstance(scan, LocationScan):
            return self._locate(scan.location)
        if isinstance(scan, CommandScan):
            return self._command(scan.command, read.seen_us)
        return self._item(scan, read.seen_us)

    def _locate(self, location: str) -> Outcome:
        notice = self._abandon(f"location {location} scanned")
        self.location = location
        if self.mode == "count":
            self._count = _Count(location)
        return Outcome(notice=notice)

    def _command(self, command: Command, seen_us: int) -> Outcome:
        if command is Command.END:
            if self._count is None:
                return Outcome(notice=f"END scanned in {self.mode} mode, not in a count: ignored")
            count, self._count = self._count, _Count(self.location)
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
        self.mode = mode
        self._count = _Count(self.location) if mode == "count" else None
        return Outcome(notice=notice)

    def _item(self, item: ItemScan, seen_us: int) -> Outcome:
        if self._count is not None:
            return Outcome(notice=self._add(self._count, item))
        step = MODE_STEPS[self.mode]
        event = ScanEvent(
            read_point=self.read_point,
            biz_location=self.location,
            biz_step=step.biz_step,
            direction=step.direction,
            seen_us=seen_us,
            quantity=quantity(item),
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
