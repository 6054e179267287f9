"""The values stock rules read and return: state in, effects out. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

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


@dataclass(frozen=True, slots=True)
class UnitState:
    """Where a tagged unit is, as of its latest event (by event time, ties by event id)."""

    epc: str
    item: str
    """The ``ItemKey.ref`` of the unit's item."""
    location: str | None
    status: UnitStatus
    last_event_time: datetime
    last_event_id: str

    def is_older_than(self, event_time: datetime, event_id: str) -> bool:
        """True when an event at (event_time, event_id) is newer than this state."""
        return (self.last_event_time, self.last_event_id) < (event_time, event_id)


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """An alert to open unless one of the same kind and subject is open already."""

    kind: str
    severity: Severity
    subject: str
    message: str
    evidence: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StockState:
    """What the rules may know about the store before a batch is applied.

    Args:
        units: current state of the units the batch names (absent = never seen).
        known_items: ``ItemKey.ref`` of every item that exists among those the batch names.
    """

    units: Mapping[str, UnitState]
    known_items: frozenset[str]


@dataclass(slots=True)
class Plan:
    """The effects of a batch's fresh events, in event-time order."""

    movements: list[Movement] = field(default_factory=list)
    units: dict[str, UnitState] = field(default_factory=dict)
    """Final state of each unit whose state changed (newer than what the store had)."""
    new_items: dict[str, ItemKey] = field(default_factory=dict)
    alerts: list[AlertSpec] = field(default_factory=list)
