"""Cycle counts: a count closes with its discrepancies, as ledger rows. Pure.

A count is one event (biz step ``cycle_counting``, wire ``quantities``): everything seen at
``biz_location`` (the location itself, not its subtree), one line per GTIN, lot, serial and
expiry; an empty list says the location was counted empty. It is compared with what the
books held there **as of the count's event time**, and every difference becomes a ledger
row of kind ``count_adjustment`` (reason ``cycle_counting``):

- **Units** (tagged stock, ``units`` rows). A line with a serial number names a unit: its
  EPC is the SGTIN of the line's GTIN and serial (``sgtin_candidates``: one candidate per
  GS1 company prefix length, so no prefix table is needed). Then:

  - a unit in stock at the location but not seen becomes ``missing`` (a row of 1 out of
    the location, no location afterwards);
  - a unit seen but recorded elsewhere (in stock or in transit) is moved there (a row from
    where the books had it);
  - a unit seen that was not in stock (``missing``, ``shipped``: this one also raises
    ``unit_seen_after_shipped``) is back in stock there (a row of 1 into the location);
  - a unit whose newest event is newer than the count is left alone: that event says
    where it is now.

  Units are judged per item: an item with at least one serial line is counted unit by
  unit, and so is an item the count does not list at all (counted zero: its units there
  are missing). An item listed only by quantity (a box barcode without serials) is counted
  as a class: no unit becomes missing, its units there count towards what was expected.
- **Quantities** (stock without EPC: barcode receipts). Per item, the counted quantity
  (lines without serial, plus serial lines that name no known unit) minus what the ledger
  held there without EPC as of the count (plus the item's expected units, for items
  counted as a class) is booked as one row in or out.

Rows already applied that are newer than the count are left out of the comparison, so a
count that arrives late is judged as of its own time; stock booked at the location before
the count but arriving after it is not judged by it (the next count is).

A count with any difference raises ``count_discrepancy`` about the location, with the
missing, moved and found units and the quantity adjustments as evidence (the lists
bounded by ``MAX_LISTED``). A count with none clears an open ``count_discrepancy`` of the
location.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from server.rules.alerts import COUNT_DISCREPANCY, UNIT_SEEN_AFTER_SHIPPED
from server.rules.items import gtin_item
from server.rules.model import (
    AlertSpec,
    CountBasis,
    CountLine,
    CountResult,
    ItemKey,
    Movement,
    Outcome,
    RuleInput,
    UnitState,
)

MAX_LISTED = 50
"""Most EPCs (and items) a count's alert evidence lists per kind of difference."""
COMPANY_PREFIX_LENGTHS = range(6, 13)
"""GS1 company prefixes are 6 to 12 digits long."""
_URN_ESCAPES = {'"': "%22", "%": "%25", "&": "%26", "/": "%2F", "<": "%3C", ">": "%3E", "?": "%3F"}
"""Characters of a GS1 serial that an EPC URN escapes (EPC Tag Data Standard)."""

Kind = Literal["missing", "moved", "found"]


def urn_serial(serial: str) -> str:
    """A GS1 serial as it appears in an EPC pure-identity URN."""
    return "".join(_URN_ESCAPES.get(char, char) for char in serial)


def sgtin_candidates(gtin: str, serial: str) -> list[str]:
    """The SGTIN URNs that a GTIN-14 and a serial can have, one per company prefix length.

    ``80614141123458`` with serial ``7`` -> ``urn:epc:id:sgtin:0614141.812345.7`` among
    others; at most one of them is the unit's (the others name no unit).
    """
    indicator, body = gtin[0], gtin[1:13]
    tail = urn_serial(serial)
    return [
        f"urn:epc:id:sgtin:{body[:length]}.{indicator}{body[length:]}.{tail}"
        for length in COMPANY_PREFIX_LENGTHS
    ]


def item_key(ref: str) -> ItemKey:
    """The key of an item known only by its ref (a GTIN, or a reserved SKU)."""
    if len(ref) == 14 and ref.isdigit():
        return gtin_item(ref)
    return ItemKey(gtin=None, sku=ref, name=ref)


class _Reconciliation:
    """The rows, unit states and evidence of one count as they are worked out."""

    def __init__(self, inp: RuleInput, location: str) -> None:
        self.inp = inp
        self.location = location
        self.movements: list[Movement] = []
        self.units: list[UnitState] = []
        self.alerts: list[AlertSpec] = []
        self.listed: dict[Kind, list[str]] = {"missing": [], "moved": [], "found": []}
        self.adjusted: dict[str, int] = {}

    def row(
        self, item: str, quantity: int, source: str | None, target: str | None, epc: str | None
    ) -> None:
        event = self.inp.event
        self.movements.append(
            Movement(
                event_id=event.event_id,
                event_time=event.event_time,
                item=item_key(item),
                epc=epc,
                from_location=source,
                to_location=target,
                quantity=quantity,
                kind="count_adjustment",
                read_point=event.read_point,
                reason=event.biz_step,
            )
        )

    def unit(self, unit: UnitState, kind: Kind) -> None:
        event = self.inp.event
        here = self.location
        if kind == "missing":
            self.row(unit.item, 1, here, None, unit.epc)
        elif kind == "moved":
            self.row(unit.item, 1, unit.location, here, unit.epc)
        else:
            self.row(unit.item, 1, None, here, unit.epc)
        self.units.append(
            replace(
                unit,
                location=None if kind == "missing" else here,
                status="missing" if kind == "missing" else "in_stock",
                last_event_time=event.event_time,
                last_event_id=event.event_id,
                site=self.inp.site,
            )
        )
        self.listed[kind].append(unit.epc)

    def quantity(self, item: str, difference: int) -> None:
        if difference > 0:
            self.row(item, difference, None, self.location, None)
        else:
            self.row(item, -difference, self.location, None, None)
        self.adjusted[item] = difference

    def outcome(self, lines: tuple[CountLine, ...]) -> Outcome:
        event = self.inp.event
        results = (
            CountResult(event.event_id, event.event_time, self.location, event.read_point, lines),
        )
        if not self.movements:
            return Outcome(
                alerts=tuple(self.alerts),
                cleared=((COUNT_DISCREPANCY.kind, self.location),),
                counts=results,
            )
        counts = {kind: len(epcs) for kind, epcs in self.listed.items()}
        summary = (
            f"{counts['missing']} units missing, {counts['moved']} moved here, "
            f"{counts['found']} found, {len(self.adjusted)} quantities adjusted"
        )
        evidence: dict[str, object] = {
            "event_id": self.inp.event.event_id,
            "counted_at": self.inp.event.event_time.isoformat(),
            "read_point": self.inp.event.read_point,
            "location": self.location,
            "summary": summary,
            **{kind: epcs[:MAX_LISTED] for kind, epcs in self.listed.items()},
            **{f"{kind}_count": n for kind, n in counts.items()},
            "adjusted": dict(sorted(self.adjusted.items())[:MAX_LISTED]),
        }
        alert = COUNT_DISCREPANCY.raise_(self.location, evidence, site=self.inp.site)
        return Outcome(
            movements=tuple(self.movements),
            units=tuple(self.units),
            alerts=(*self.alerts, alert),
            counts=results,
        )


def _loose(inp: RuleInput, basis: CountBasis, location: str) -> Counter[str]:
    """Stock without EPC at ``location`` as of the count: the ledger's, plus this batch's."""
    loose: Counter[str] = Counter(basis.loose)
    assert inp.batch is not None
    # The planner goes in event-time order, so everything planned so far is older.
    for movement in inp.batch.movements:
        if movement.epc is not None:
            continue
        if movement.to_location == location:
            loose[movement.item.ref] += movement.quantity
        if movement.from_location == location:
            loose[movement.item.ref] -= movement.quantity
    return loose


def _resolve(gtin: str, serial: str, units: Mapping[str, UnitState]) -> UnitState | None:
    for epc in sgtin_candidates(gtin, serial):
        unit = units.get(epc)
        if unit is not None:
            return unit
    return None


def count_location(inp: RuleInput) -> Outcome:
    """Close a cycle count with its discrepancies (see the module docstring)."""
    event = inp.event
    location = event.biz_location
    assert event.quantities is not None
    assert location is not None
    assert inp.batch is not None
    basis = inp.batch.counts.get(event.event_id) or CountBasis(location, {}, {})
    units = inp.batch.units
    work = _Reconciliation(inp, location)

    counted: Counter[str] = Counter()
    serial_items: set[str] = set()
    seen: dict[str, UnitState] = {}
    for line in event.quantities:
        if line.serial is None:
            counted[line.gtin] += line.qty
            continue
        serial_items.add(line.gtin)
        unit = _resolve(line.gtin, line.serial, units)
        if unit is None:
            counted[line.gtin] += line.qty  # a serial of no known unit: stock without EPC
        else:
            seen[unit.epc] = unit
    by_class = set(counted) - serial_items

    def judged(unit: UnitState) -> bool:
        return unit.is_older_than(event.event_time, event.event_id)

    expected = sorted(
        (
            unit
            for unit in units.values()
            if unit.location == location and unit.status == "in_stock" and judged(unit)
        ),
        key=lambda unit: unit.epc,
    )
    expected_by_class: Counter[str] = Counter(
        unit.item for unit in expected if unit.item in by_class
    )
    for unit in expected:
        if unit.item not in by_class and unit.epc not in seen:
            work.unit(unit, "missing")
    for epc in sorted(seen):
        unit = seen[epc]
        if not judged(unit) or (unit.status == "in_stock" and unit.location == location):
            continue
        if unit.status in ("in_stock", "in_transit") and unit.location is not None:
            work.unit(unit, "moved")
            continue
        if unit.status == "shipped":
            work.alerts.append(
                UNIT_SEEN_AFTER_SHIPPED.raise_(
                    epc,
                    {
                        "event_id": event.event_id,
                        "event_time": event.event_time.isoformat(),
                        "read_point": event.read_point,
                        "location": location,
                        "shipped_at": unit.last_event_time.isoformat(),
                    },
                    site=inp.site,
                )
            )
        work.unit(unit, "found")

    loose = _loose(inp, basis, location)
    for item in sorted(set(loose) | set(counted)):
        expected_quantity = loose[item] + expected_by_class[item]
        difference = counted[item] - expected_quantity
        if difference:
            work.quantity(item, difference)
    # What the count says per item, units and quantities together, for count accuracy.
    # Units with a newer event than the count are left out on both sides, as above.
    books: Counter[str] = Counter(unit.item for unit in expected)
    for item, quantity in loose.items():
        books[item] += quantity
    found: Counter[str] = Counter(unit.item for unit in seen.values() if judged(unit))
    for item, quantity in counted.items():
        found[item] += quantity
    lines = tuple(
        CountLine(item, books[item], found[item])
        for item in sorted(set(books) | set(found))
        if books[item] or found[item]
    )
    return work.outcome(lines)
