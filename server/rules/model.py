"""The values stock rules read and return: state in, effects out. No I/O here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from plumbing.records import record
from server.rules.points import ReadPoint
from server.rules.policy import DEFAULT_POLICY, Policy
from wire.models import Event

UnitStatus = Literal["in_stock", "in_transit", "shipped", "missing"]
LedgerKind = Literal["receipt", "shipment", "transfer", "count_adjustment", "loss"]
Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class ItemKey:
    """How an event names its item, and what to create if the item is not known yet.

    ``ref`` is the lookup key: the GTIN when there is one, else the reserved SKU of an
    "unidentified EPC" item (see ``server.rules.items``).
    """

    gtin: str | None
    sku: str
    name: str

    @property
    def ref(self) -> str:
        return self.gtin if self.gtin is not None else self.sku


@record
class UnitState:
    """Where a tagged unit is, as of its latest event (by event time, ties by event id)."""

    epc: str
    item: str
    """The ``ItemKey.ref`` of the unit's item."""
    location: str | None
    status: UnitStatus
    last_event_time: datetime
    last_event_id: str
    site: str | None = None
    """The site of that event; kept when the unit leaves (shipped, missing, in transit), so
    a later sighting elsewhere can be judged against it (``impossible_movement``)."""

    def is_older_than(self, event_time: datetime, event_id: str) -> bool:
        """True when an event at (event_time, event_id) is newer than this state."""
        return (self.last_event_time, self.last_event_id) < (event_time, event_id)


@record
class Movement:
    """One ledger row to append."""

    event_id: str | None
    event_time: datetime
    item: ItemKey
    epc: str | None
    from_location: str | None
    to_location: str | None
    quantity: int
    kind: LedgerKind
    read_point: str | None
    reason: str | None = None
    note: str | None = None
    """Free text a person gave with an API stock operation."""
    reverses: int | None = None
    """The ledger row id this row cancels (a reversal)."""
    confidence: float | None = None
    """The edge's confidence in the direction of the portal pass that made the row."""


@dataclass(frozen=True, slots=True)
class UnresolvedPass:
    """A portal pass with no direction, to be kept until an operator resolves it.

    ``item`` is the ``ItemKey.ref`` of the item its EPC names (created like a receipt's
    when unknown); ``site`` is the read point's site.
    """

    event: Event
    item: str
    site: str


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """An alert to open unless one of the same kind and subject is open already."""

    kind: str
    severity: Severity
    subject: str
    message: str
    evidence: Mapping[str, Any]
    site: str | None = None
    """The site it concerns; None: the caller's site (or none)."""


OrderKind = Literal["purchase", "sales", "transfer"]


@dataclass(frozen=True, slots=True)
class OpenLine:
    """A line of an open order, as the store had it before the batch (``server.ingest.order_book``).

    ``location`` is where a purchase order receives and where sales and transfer orders ship
    from; ``destination`` is where a transfer order receives.
    """

    line_id: int
    order_id: int
    kind: OrderKind
    number: str
    line_no: int
    item: str
    """The ``ItemKey.ref`` of the line's item."""
    item_id: int
    location: str
    destination: str | None
    quantity: int
    received: int
    shipped: int


@dataclass(frozen=True, slots=True)
class LineDelta:
    """What a batch adds to one order line's received and shipped counters."""

    line_id: int
    received: int = 0
    shipped: int = 0


@dataclass(frozen=True, slots=True)
class CountBasis:
    """What a cycle count is compared with, besides the units at its location.

    Args:
        location: the counted location.
        loose: per ``ItemKey.ref``, the quantity held there without an EPC (barcode stock)
            as of the count's event time, from the ledger.
        items: the keys of the items in ``loose``.
    """

    location: str
    loose: Mapping[str, int]
    items: Mapping[str, ItemKey]


@dataclass(frozen=True, slots=True)
class StockState:
    """What the rules may know about the store before a batch is applied.

    Args:
        units: current state of the units the batch names (absent = never seen).
        known_items: ``ItemKey.ref`` of every item that exists among those the batch names.
    """

    units: Mapping[str, UnitState]
    known_items: frozenset[str]
    counts: Mapping[str, CountBasis] = field(default_factory=dict)
    """Per event id of a cycle count in the batch; its location's units are in ``units``."""
    orders: tuple[OpenLine, ...] = ()
    """Open order lines of the items the batch names."""
    ordering_sites: frozenset[tuple[Literal["in", "out"], str]] = frozenset()
    """(direction, site) of sites with an open order receiving there (``in``) or shipping
    from there (``out``), whatever the item."""


@dataclass(frozen=True, slots=True)
class Departure:
    """A unit that left a watched shelf: missing at ``due_at`` unless read before
    (``server.rules.shelves``)."""

    epc: str
    item: str
    """The ``ItemKey.ref`` of the unit's item."""
    read_point: str
    location: str
    departed_at: datetime
    event_id: str
    due_at: datetime


@dataclass(slots=True)
class Plan:
    """The effects of a batch's fresh events, in event-time order."""

    movements: list[Movement] = field(default_factory=list)
    units: dict[str, UnitState] = field(default_factory=dict)
    """Final state of each unit whose state changed (newer than what the store had)."""
    new_items: dict[str, ItemKey] = field(default_factory=dict)
    alerts: list[AlertSpec] = field(default_factory=list)
    cleared: list[tuple[str, str]] = field(default_factory=list)
    """(kind, subject) of open alerts whose condition the batch ended (a clean count)."""
    order_updates: list[LineDelta] = field(default_factory=list)
    """What the batch's receipts and shipments add to open order lines."""
    unresolved: list[UnresolvedPass] = field(default_factory=list)
    """Portal passes without a direction (``server.rules.stock.is_undirected_pass``)."""
    sightings: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    """Per EPC, the newest tagged event of the batch (time, id): it was read then."""
    departures: dict[str, Departure] = field(default_factory=dict)
    """Units that left a watched shelf and were not read again in the batch
    (``server.rules.shelves``)."""
    counts: list[CountResult] = field(default_factory=list)
    """The batch's cycle counts, expected against counted per item."""

    def locations(self) -> set[str]:
        """Every location the plan's movements and unit states name."""
        moved = {
            location
            for movement in self.movements
            for location in (movement.from_location, movement.to_location)
            if location is not None
        }
        return moved | {unit.location for unit in self.units.values() if unit.location is not None}


@dataclass(frozen=True, slots=True)
class CountLine:
    """One item of a cycle count: what the books held at the location as of the count, and
    what was counted (units and quantities alike)."""

    item: str
    """The item's ``ItemKey.ref`` (its GTIN, or a reserved SKU)."""
    expected: int
    counted: int


@dataclass(frozen=True, slots=True)
class CountResult:
    """A cycle count as counted, kept for the count accuracy report."""

    event_id: str
    event_time: datetime
    location: str
    read_point: str
    lines: tuple[CountLine, ...]


@dataclass(frozen=True, slots=True)
class BatchView:
    """What the batch has planned so far, for rules that look past their own event (counts).

    ``units`` and ``movements`` are the planner's live containers (read only here): unit
    states as of the events before this one, and the movements planned for them.
    """

    units: Mapping[str, UnitState]
    movements: Sequence[Movement]
    counts: Mapping[str, CountBasis]


@record
class RuleInput:
    """Everything a rule may look at for one event."""

    event: Event
    read_point: ReadPoint
    item: ItemKey
    """The event's item (a count names many: see ``event.quantities``)."""
    unit: UnitState | None
    """The unit's state before this event (None: never seen, or not a tagged event)."""
    site: str | None = None
    """The site the event happened at (``server.rules.policy.event_site``)."""
    policy: Policy = DEFAULT_POLICY
    batch: BatchView | None = None

    @property
    def late(self) -> bool:
        """The event is older than the unit's newest known event."""
        return self.unit is not None and not self.unit.is_older_than(
            self.event.event_time, self.event.event_id
        )

    def evidence(self) -> dict[str, object]:
        evidence: dict[str, object] = {
            "event_id": self.event.event_id,
            "event_time": self.event.event_time.isoformat(),
            "read_point": self.event.read_point,
        }
        if self.event.epc is not None:
            evidence["epc"] = self.event.epc
        if self.item.gtin is not None:
            evidence["gtin"] = self.item.gtin
        if self.late:
            evidence["late"] = True
        return evidence


@record
class Outcome:
    """What one rule does for one event."""

    movements: tuple[Movement, ...] = ()
    units: tuple[UnitState, ...] = ()
    """Unit states after the event; each applies only if newer than the unit's state."""
    alerts: tuple[AlertSpec, ...] = ()
    cleared: tuple[tuple[str, str], ...] = ()
    """(kind, subject) of open alerts whose condition this event ended."""
    counts: tuple[CountResult, ...] = ()
    """A cycle count's figures (``server.rules.counts``)."""


Effect = Callable[[RuleInput], Outcome]
"""A rule's pure function: one event in, its effects out."""
