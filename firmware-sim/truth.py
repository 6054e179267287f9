"""The ground truth of a scenario: what a correct system must end up with (pure).

A ``Book`` replays a scenario's timeline — dock-door passes and handheld scans — and keeps
what is on hand per item (GTIN-14) and location, where each tagged unit is, and which
alerts must fire. Scans mean what ``wire.barcodes`` and the edge's scan sessions say:

* ``CMD:RECEIVE`` / ``CMD:PICK`` / ``CMD:MOVE`` / ``CMD:COUNT`` switch the scanner's mode;
  ``LOC:<id>`` sets its location; a scanner starts in receive mode with no location
  scanned, where its read point's inbound location is (the scenario's scanner
  ``read_point``, which the server's read point of that id receives into).
* receive: each item scan adds its quantity (AI 30/37, else 1) at the location;
* pick: each item scan takes its quantity from the location to the pick zone of the
  scanner's site (``<site>.staging``, the server's default ``[operations] pick_zone``);
* negative stock: a pick or move taking more than the location holds is refused (moves
  nothing, and is listed in ``refused``) at a site that refuses negative stock; elsewhere
  it applies and ``("negative_stock", "<location>/<gtin>")`` must fire;
* move: the location scanned before the items (or current when move mode began) is the
  source; items are held until the next location label, the destination, and then move
  from source to destination; items before any source, or held when the mode changes,
  move nothing;
* count: item scans are collected (a serial scanned twice is one unit) and ``CMD:END``
  sets on hand at the location to what was counted, item by item, including zero for an
  item the system had there and nobody scanned. Units not found become ``missing``. A
  count needs a scanned location: without one nothing is counted (the edge refuses).
* a pallet label (an SSCC, or its GS1 Digital Link) is each unit the server was told the
  pallet holds (``pallets``) scanned in turn; a pallet nobody told the server about
  moves nothing, and a count does not take a pallet label.

Shelves (continuous counting) keep the books by themselves:

* a case put on a shelf is there (``shelf_arrive``): moved from where the books had it,
  or, never seen or missing, back in stock there;
* a case taken off a shelf and read nowhere for the shelf's ``missing_after_s``
  (``shelf_missing``) is missing: one unit less at the shelf's location, counted as
  shrinkage of that shelf; a case picked with a handheld scan (its serial) went to the
  pick zone instead, and one put back in time never left the books.

Alerts that must fire, as (kind, subject):

* ``("unknown_item", gtin)``: stock of a GTIN that is not in the item master moved
  (received through a door, or counted/received by a scanner);
* ``("count_discrepancy", "<gtin>@<location>")``: a count found a different quantity
  than the system held;
* ``("unit_missing", urn)``: a case a shelf lost (taken off and read nowhere).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from wire.scans import MODE_OF, Command, CommandScan, ItemScan, LocationScan, Mode, PalletScan, Scan

UNKNOWN_ITEM: Final = "unknown_item"
NEGATIVE_STOCK: Final = "negative_stock"
COUNT_DISCREPANCY: Final = "count_discrepancy"
UNIT_MISSING: Final = "unit_missing"


class ExpectedAlert(NamedTuple):
    """An alert a correct server raises: its kind and its subject."""

    kind: str
    subject: str


@dataclass(frozen=True, slots=True)
class CountTruth:
    """One closed count: what the system held and what was found, per GTIN."""

    at_s: float
    scanner: str
    location: str
    expected: dict[str, int]
    counted: dict[str, int]

    @property
    def discrepancies(self) -> dict[str, int]:
        """GTIN -> counted minus expected, where they differ."""
        gtins = set(self.expected) | set(self.counted)
        diff = {g: self.counted.get(g, 0) - self.expected.get(g, 0) for g in gtins}
        return {g: d for g, d in sorted(diff.items()) if d}


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What a correct system knows after the scenario.

    Attributes:
        stock: on hand by (GTIN-14, location); locations with none are left out.
        received: EPC URNs of every unit that passed "in".
        shipped: EPC URNs of every unit that passed "out".
        staged: EPC URNs of units on staged pallets (they move nothing).
        missing: EPC URNs of units a count did not find (and that stayed lost).
        alerts: alerts that must fire, each once, in the order they arise.
        counts: every closed count, in time order.
        refused: (scanner, GTIN, location) of every scan the server must refuse for
            negative stock, in time order.
        shrinkage: units shelves recorded missing, by (shelf read point, location, GTIN).
    """

    stock: dict[tuple[str, str], int]
    received: set[str]
    shipped: set[str]
    staged: set[str]
    missing: set[str] = field(default_factory=set)
    alerts: tuple[ExpectedAlert, ...] = ()
    counts: tuple[CountTruth, ...] = ()
    refused: tuple[tuple[str, str, str], ...] = ()
    shrinkage: dict[tuple[str, str, str], int] = field(default_factory=dict)

    @property
    def units_shipped(self) -> int:
        return len(self.shipped)


@dataclass(frozen=True, slots=True)
class UnitInfo:
    urn: str
    gtin: str
    serial: int


@dataclass(slots=True)
class _Handheld:
    name: str
    location: str
    home: str = ""
    """Where the scanner starts: its read point's inbound location (and so its site)."""
    scanned: str | None = None
    """The location label last scanned (None: the scanner is at its read point)."""
    mode: Mode = "receive"
    source: str | None = None
    """Move mode: where held items come from."""
    held: list[ItemScan] = field(default_factory=list)
    counting: dict[str, int] = field(default_factory=dict)
    """GTIN -> quantity scanned without a serial, in the open count."""
    serials: set[tuple[str, str]] = field(default_factory=set)
    """(GTIN, serial) scanned in the open count."""


class BookError(ValueError):
    """The timeline asks for something impossible (the message says what)."""


class Book:
    """The expected state while a scenario's timeline plays (see the module docstring).

    Args:
        known_gtins: the item master the server holds.
        units: every tagged case of the scenario.
        pick_zone: the zone of a scanner's site where its picks go (None: they leave the
            books).
        refuse_negative: sites whose server refuses negative stock.
        pallets: SSCC -> EPC URNs of the units on it (what the server is told): a pallet
            label scanned is each of its units scanned (a count does not take it).
    """

    def __init__(
        self,
        known_gtins: Iterable[str],
        units: Iterable[UnitInfo],
        pick_zone: str | None = None,
        refuse_negative: Iterable[str] = (),
        pallets: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.known = frozenset(known_gtins)
        self.pick_zone = pick_zone
        self.refuse_negative = frozenset(refuse_negative)
        self.refused: list[tuple[str, str, str]] = []
        self.stock: Counter[tuple[str, str]] = Counter()
        self.unit_at: dict[str, str | None] = {}
        self.units = {u.urn: u for u in units}
        self.by_serial = {(u.gtin, str(u.serial)): u.urn for u in self.units.values()}
        self.received: set[str] = set()
        self.shipped: set[str] = set()
        self.missing: set[str] = set()
        self.alerts: dict[ExpectedAlert, None] = {}
        self.counts: list[CountTruth] = []
        self._handhelds: dict[str, _Handheld] = {}
        self.pallets = dict(pallets or {})
        self.shrinkage: dict[tuple[str, str, str], int] = {}

    def _moved(self, gtin: str) -> None:
        if gtin not in self.known:
            self.alerts.setdefault(ExpectedAlert(UNKNOWN_ITEM, gtin))

    # --- dock doors ----------------------------------------------------------------------

    def receive(self, urn: str, location: str) -> None:
        unit = self.units[urn]
        if self.unit_at.get(urn) is not None:
            raise BookError(f"unit {urn} comes in while in stock at {self.unit_at[urn]}")
        self.unit_at[urn] = location
        self.stock[(unit.gtin, location)] += 1
        self.received.add(urn)
        self.missing.discard(urn)
        self._moved(unit.gtin)

    def ship(self, urn: str) -> None:
        unit = self.units[urn]
        where = self.unit_at.get(urn)
        if where is None:
            state = "missing" if urn in self.missing else "not in stock"
            raise BookError(f"unit {urn} ships while {state}")
        self.stock[(unit.gtin, where)] -= 1
        self.unit_at[urn] = None
        self.shipped.add(urn)

    # --- shelves -------------------------------------------------------------------------

    def shelf_arrive(self, urn: str, location: str) -> None:
        """A shelf reader reads ``urn`` arriving at the shelf at ``location``."""
        unit = self.units[urn]
        where = self.unit_at.get(urn)
        if where == location:
            return
        if where is not None:
            self.stock[(unit.gtin, where)] -= 1
        self.stock[(unit.gtin, location)] += 1
        self.unit_at[urn] = location
        self.missing.discard(urn)
        self._moved(unit.gtin)

    def shelf_missing(self, urn: str, read_point: str, location: str) -> None:
        """``urn`` left the shelf at ``location`` and was read nowhere for its
        ``missing_after_s``: missing, shrinkage of that shelf (nothing if the books had it
        elsewhere by then)."""
        unit = self.units[urn]
        if self.unit_at.get(urn) != location:
            return
        self.stock[(unit.gtin, location)] -= 1
        self.unit_at[urn] = None
        self.missing.add(urn)
        key = (read_point, location, unit.gtin)
        self.shrinkage[key] = self.shrinkage.get(key, 0) + 1
        self.alerts.setdefault(ExpectedAlert(UNIT_MISSING, urn))

    def units_at(self, location: str) -> list[UnitInfo]:
        """Tagged units at ``location`` now, by GTIN and serial."""
        here = [self.units[u] for u, at in self.unit_at.items() if at == location]
        return sorted(here, key=lambda u: (u.gtin, u.serial))

    # --- handheld scans ------------------------------------------------------------------

    def handheld(self, scanner: str, location: str) -> None:
        """Declare a scanner and where it starts."""
        self._handhelds[scanner] = _Handheld(scanner, location, home=location)

    def scan(self, scanner: str, scan: Scan, at_s: float) -> None:
        """Apply one scan (see the module docstring).

        Raises:
            BookError: an undeclared scanner.
        """
        try:
            hand = self._handhelds[scanner]
        except KeyError:
            raise BookError(f"no scanner {scanner!r}") from None
        if isinstance(scan, LocationScan):
            self._locate(hand, scan.location)
        elif isinstance(scan, CommandScan):
            self._command(scanner, hand, scan.command, at_s)
        elif isinstance(scan, ItemScan):
            self._item(hand, scan)
        elif isinstance(scan, PalletScan) and hand.mode != "count":
            # The server moves what it knows the pallet holds; unknown, nothing moves.
            for urn in self.pallets.get(scan.sscc, ()):
                unit = self.units[urn]
                self._item(hand, ItemScan(unit.gtin, serial=str(unit.serial)))

    def _command(self, scanner: str, hand: _Handheld, command: Command, at_s: float) -> None:
        if command is Command.END:
            if hand.mode == "count" and hand.scanned is not None:
                self._close_count(scanner, hand, at_s)
            return
        if command is Command.COUNT and hand.mode == "count":
            return
        hand.mode = MODE_OF[command]
        hand.counting.clear()
        hand.serials.clear()
        hand.held.clear()
        hand.source = hand.scanned

    def _locate(self, hand: _Handheld, location: str) -> None:
        if hand.mode == "count":
            hand.counting.clear()  # an open count is abandoned by any label
            hand.serials.clear()
        hand.location = hand.scanned = location
        if hand.mode != "move":
            return
        if not hand.held:
            hand.source = location
            return
        if location == hand.source:
            return  # the edge asks for the destination and keeps holding
        assert hand.source is not None
        for item in hand.held:
            if not self._take(hand, item, hand.source):
                continue
            self.stock[(item.gtin, location)] += item.qty
            urn = self.by_serial.get((item.gtin, item.serial)) if item.serial else None
            if urn is not None:
                self.unit_at[urn] = location
        hand.held.clear()
        hand.source = None

    def _item(self, hand: _Handheld, item: ItemScan) -> None:
        urn = self.by_serial.get((item.gtin, item.serial)) if item.serial else None
        where = hand.location
        if hand.mode == "count":
            if hand.scanned is None:
                return  # a count needs its location
            if item.serial is not None:
                hand.serials.add((item.gtin, item.serial))
            else:
                hand.counting[item.gtin] = hand.counting.get(item.gtin, 0) + item.qty
            return
        if hand.mode == "receive":
            self.stock[(item.gtin, where)] += item.qty
            if urn is not None:
                self.unit_at[urn] = where
            self._moved(item.gtin)
        elif hand.mode == "pick":
            if not self._take(hand, item, where):
                return
            target = None
            if self.pick_zone is not None:
                target = f"{hand.home.split('.', 1)[0]}.{self.pick_zone}"
                self.stock[(item.gtin, target)] += item.qty
            if urn is not None:
                self.unit_at[urn] = target
        elif hand.source is not None:  # move: held until the destination is scanned
            hand.held.append(item)

    def _take(self, hand: _Handheld, item: ItemScan, where: str) -> bool:
        """Take ``item`` out of ``where`` unless the site refuses the negative stock."""
        after = self.stock[(item.gtin, where)] - item.qty
        if after < 0:
            if where.split(".", 1)[0] in self.refuse_negative:
                self.refused.append((hand.name, item.gtin, where))
                return False
            self.alerts.setdefault(ExpectedAlert(NEGATIVE_STOCK, f"{where}/{item.gtin}"))
        self.stock[(item.gtin, where)] = after
        return True

    def _close_count(self, scanner: str, hand: _Handheld, at_s: float) -> None:
        location = hand.location
        counted: Counter[str] = Counter(hand.counting)
        for gtin, _ in hand.serials:
            counted[gtin] += 1
        expected = {g: n for (g, loc), n in self.stock.items() if loc == location and n}
        for gtin in sorted(set(expected) | set(counted)):
            if counted.get(gtin, 0) != expected.get(gtin, 0):
                self.alerts.setdefault(ExpectedAlert(COUNT_DISCREPANCY, f"{gtin}@{location}"))
            if counted.get(gtin, 0):
                self._moved(gtin)
            self.stock[(gtin, location)] = counted.get(gtin, 0)
        found = {self.by_serial.get(key) for key in hand.serials}
        for unit in self.units_at(location):
            if unit.urn not in found:
                self.unit_at[unit.urn] = None
                self.missing.add(unit.urn)
        for urn in found:
            if urn is not None:
                self.unit_at[urn] = location
                self.missing.discard(urn)
        self.counts.append(
            CountTruth(at_s, scanner, location, dict(sorted(expected.items())), dict(counted))
        )
        hand.counting.clear()
        hand.serials.clear()

    def truth(self, staged: set[str]) -> GroundTruth:
        return GroundTruth(
            stock={key: n for key, n in sorted(self.stock.items()) if n},
            received=set(self.received),
            shipped=set(self.shipped),
            staged=set(staged),
            missing=set(self.missing),
            alerts=tuple(self.alerts),
            counts=tuple(self.counts),
            refused=tuple(self.refused),
            shrinkage=dict(self.shrinkage),
        )
