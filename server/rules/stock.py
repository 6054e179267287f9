"""Stock rules: a table of frozen rule descriptions and the pure function that applies them.

A rule is chosen by what the event identifies (a tagged unit or a barcode quantity), its
direction, and, for outbound passes, what the read point's ``outbound`` setting says. An
event that no rule takes (direction null, or ``outbound = "ignore"``) has no stock effect;
its id is still recorded so a redelivery is a no-op.

Decisions written down here (DESIGN.md section 4, "order does not matter"):

- Every pass is an increment: an inbound pass receives one unit into the read point's
  ``inbound_location``, an outbound pass ships one unit out. Increments commute, so the
  balances end the same whatever order batches arrive in.
- A shipment leaves from the unit's current location when the unit is in stock. When it is
  not (never received, shipped already, missing), the shipment is still recorded, from the
  read point's ``inbound_location``, and a ``unit_not_in_stock`` alert is raised: the goods
  physically left, so the ledger says so, and a person looks at why the unit was not known.
  That balance may go negative until someone corrects it.
- An inbound pass of a unit that is in stock already receives it again (a missed outbound
  pass is the likely cause) and raises ``unit_already_in_stock``.
- A unit's current location and status follow its newest event by event time (ties by
  event id). An older event arriving late still writes its ledger row (history) but does not
  overwrite the unit's state. The anomaly alerts above compare against the state the store
  has when the event is applied; for a late event that state can be newer than the event,
  so the alert evidence says ``"late": true``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from server.config import Outbound, ReadPointSettings
from server.rules.alerts import (
    UNIDENTIFIED_EPC,
    UNIT_ALREADY_IN_STOCK,
    UNIT_NOT_IN_STOCK,
    UNKNOWN_ITEM,
)
from server.rules.items import epc_scheme, identify
from server.rules.model import AlertSpec, ItemKey, Movement, Plan, StockState, UnitState
from wire.models import Direction, Event

Identity = Literal["epc", "quantity"]


@dataclass(frozen=True, slots=True)
class RuleInput:
    """Everything a rule may look at for one event."""

    event: Event
    read_point: ReadPointSettings
    item: ItemKey
    unit: UnitState | None
    """The unit's state before this event (None: never seen, or not a tagged event)."""

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


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one rule does for one event."""

    movement: Movement | None = None
    unit: UnitState | None = None
    """The unit's state after the event; applied only if the event is the unit's newest."""
    alerts: tuple[AlertSpec, ...] = ()


Effect = Callable[[RuleInput], Outcome]


@dataclass(frozen=True, slots=True)
class StockRule:
    """One row of the rule table.

    Args:
        name: for logs and docs.
        identity: ``epc`` (a tagged unit) or ``quantity`` (a barcode scan).
        direction: the pass direction the rule takes.
        outbound: for outbound rules, the read point ``outbound`` setting it applies to.
        effect: the pure function that turns the event into effects.
    """

    name: str
    identity: Identity
    direction: Direction
    outbound: Outbound | None
    effect: Effect


def _movement(
    inp: RuleInput,
    kind: Literal["receipt", "shipment"],
    quantity: int,
    source: str | None,
    target: str | None,
) -> Movement:
    return Movement(
        event_id=inp.event.event_id,
        event_time=inp.event.event_time,
        item=inp.item,
        epc=inp.event.epc,
        from_location=source,
        to_location=target,
        quantity=quantity,
        kind=kind,
        read_point=inp.event.read_point,
    )


def _unit_after(
    inp: RuleInput, location: str | None, status: Literal["in_stock", "shipped"]
) -> UnitState:
    assert inp.event.epc is not None
    return UnitState(
        epc=inp.event.epc,
        item=inp.item.ref,
        location=location,
        status=status,
        last_event_time=inp.event.event_time,
        last_event_id=inp.event.event_id,
    )


def receive_unit(inp: RuleInput) -> Outcome:
    """An inbound pass of a tagged unit: receipt into the read point's inbound location."""
    target = inp.read_point.inbound_location
    alerts: tuple[AlertSpec, ...] = ()
    if inp.unit is not None and inp.unit.status == "in_stock":
        alerts = (
            UNIT_ALREADY_IN_STOCK.raise_(
                inp.unit.epc,
                inp.evidence() | {"location": inp.unit.location},
                read_point=inp.event.read_point,
                location=inp.unit.location,
            ),
        )
    return Outcome(
        movement=_movement(inp, "receipt", 1, None, target),
        unit=_unit_after(inp, target, "in_stock"),
        alerts=alerts,
    )


def ship_unit(inp: RuleInput) -> Outcome:
    """An outbound pass of a tagged unit: shipment out of the site (see module docstring)."""
    unit = inp.unit
    alerts: tuple[AlertSpec, ...] = ()
    if unit is not None and unit.status == "in_stock" and unit.location is not None:
        source = unit.location
    else:
        source = inp.read_point.inbound_location
        status = "never received" if unit is None else unit.status.replace("_", " ")
        assert inp.event.epc is not None
        alerts = (
            UNIT_NOT_IN_STOCK.raise_(
                inp.event.epc,
                inp.evidence() | {"status": status},
                read_point=inp.event.read_point,
                status=status,
                location=source,
            ),
        )
    return Outcome(
        movement=_movement(inp, "shipment", 1, source, None),
        unit=_unit_after(inp, None, "shipped"),
        alerts=alerts,
    )


def receive_quantity(inp: RuleInput) -> Outcome:
    """An inbound barcode scan: receipt of its quantity into the inbound location."""
    assert inp.event.quantity is not None
    return Outcome(
        movement=_movement(
            inp, "receipt", inp.event.quantity.qty, None, inp.read_point.inbound_location
        )
    )


def ship_quantity(inp: RuleInput) -> Outcome:
    """An outbound barcode scan: shipment of its quantity from the inbound location."""
    assert inp.event.quantity is not None
    return Outcome(
        movement=_movement(
            inp, "shipment", inp.event.quantity.qty, inp.read_point.inbound_location, None
        )
    )


STOCK_RULES: tuple[StockRule, ...] = (
    StockRule("receive-unit", "epc", "in", None, receive_unit),
    StockRule("ship-unit", "epc", "out", "ship", ship_unit),
    StockRule("receive-quantity", "quantity", "in", None, receive_quantity),
    StockRule("ship-quantity", "quantity", "out", "ship", ship_quantity),
)

_RULES_BY_KEY: Mapping[tuple[Identity, Direction, Outbound | None], StockRule] = {
    (rule.identity, rule.direction, rule.outbound): rule for rule in STOCK_RULES
}


def rule_for(event: Event, read_point: ReadPointSettings) -> StockRule | None:
    """The rule that takes ``event`` at ``read_point``, or None (no stock effect)."""
    if event.direction is None:
        return None
    identity: Identity = "epc" if event.epc is not None else "quantity"
    outbound = read_point.outbound if event.direction == "out" else None
    return _RULES_BY_KEY.get((identity, event.direction, outbound))


def _new_item_alert(item: ItemKey, inp: RuleInput) -> AlertSpec:
    if item.gtin is not None:
        return UNKNOWN_ITEM.raise_(item.gtin, inp.evidence())
    scheme = epc_scheme(inp.event.epc or "")
    return UNIDENTIFIED_EPC.raise_(item.sku, inp.evidence(), scheme=scheme)


def plan(
    events: Iterable[Event],
    state: StockState,
    read_points: Mapping[str, ReadPointSettings],
) -> Plan:
    """The effects of ``events`` on a store in ``state``. Pure: no I/O, no clock.

    Events are taken in event-time order (ties by event id) so a unit's state inside one
    batch evolves as it would have in real time.

    Raises:
        KeyError: an event names a read point missing from ``read_points`` (the caller
            dead-letters those before planning).
    """
    result = Plan()
    units = dict(state.units)
    known = set(state.known_items)
    for event in sorted(events, key=lambda e: (e.event_time, e.event_id)):
        read_point = read_points[event.read_point]
        rule = rule_for(event, read_point)
        if rule is None:
            continue
        item = identify(event)
        inp = RuleInput(event, read_point, item, units.get(event.epc) if event.epc else None)
        if item.ref not in known:
            known.add(item.ref)
            result.new_items[item.ref] = item
            result.alerts.append(_new_item_alert(item, inp))
        outcome = rule.effect(inp)
        if outcome.movement is not None:
            result.movements.append(outcome.movement)
        result.alerts.extend(outcome.alerts)
        new = outcome.unit
        if new is not None and not inp.late:
            units[new.epc] = new
            result.units[new.epc] = new
    return result
