"""Stock rules: a table of frozen rule descriptions and the pure function that applies them.

A rule is chosen by what the event identifies (a tagged unit or a barcode quantity), its
direction, and, for outbound passes, what the read point's ``outbound`` setting says. An
event that no rule takes (direction null, or ``outbound = "ignore"``) has no stock effect;
its id is still recorded so a redelivery is a no-op. Business steps with rules of their
own (moves, picks, counts: ``server.rules.steps``) are looked up before these passes.

Decisions written down here (docs/architecture.md §4, "order does not matter"):

- Every pass is an increment: an inbound pass receives one unit into the read point's
  ``inbound_location``, an outbound pass ships one unit out. A receipt that names a
  ``biz_location`` (a handheld in receive mode after a location label) receives there
  instead; a barcode shipment leaves from the location it names (``source_location``,
  else ``biz_location``), else from the inbound location. Increments commute, so the
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

import operator
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from server.rules.alerts import (
    UNIDENTIFIED_EPC,
    UNIT_ALREADY_IN_STOCK,
    UNIT_MISSING,
    UNIT_NOT_IN_STOCK,
    UNKNOWN_ITEM,
    UNRESOLVED_PASSES,
)
from server.rules.items import NO_ITEM, epc_scheme, event_items
from server.rules.model import (
    AlertSpec,
    BatchView,
    Effect,
    ItemKey,
    Movement,
    Outcome,
    Plan,
    RuleInput,
    StockState,
    UnitState,
    UnresolvedPass,
)
from server.rules.orders import OrderBook
from server.rules.points import Outbound, ReadPoint
from server.rules.policy import DEFAULT_POLICY, Policy, event_site
from server.rules.shelves import departure
from server.rules.steps import StepRule, step_rule_for
from server.rules.units import lifecycle_alerts
from wire.models import Direction, Event

EVENT_ORDER = operator.attrgetter("event_time", "event_id")
"""The order a plan takes events in: by time, then id (one C call per event)."""

PLAN_STEP_EVENTS = 128
"""Events ``plan_in_steps`` plans between two pauses (about 2 ms of work)."""

Identity = Literal["epc", "quantity"]


@dataclass(frozen=True, slots=True)
class StockRule:
    """One row of the rule table.

    Args:
        name: for logs and docs.
        identity: ``epc`` (a tagged unit) or ``quantity`` (a barcode scan).
        direction: the pass direction the rule takes.
        outbound: for outbound rules, the read point ``outbound`` setting it applies to.
        effect: the pure function that turns the event into effects.
        sighting: whether a shipped unit seen by the event raises ``unit_seen_after_shipped``
            (not for passes: an inbound pass is a return, an outbound one is reported as
            ``unit_not_in_stock``).
    """

    name: str
    identity: Identity
    direction: Direction
    outbound: Outbound | None
    effect: Effect
    sighting: bool = False


def _movement(
    inp: RuleInput,
    kind: Literal["receipt", "shipment", "transfer"],
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
        confidence=_pass_confidence(inp.event),
    )


def _pass_confidence(event: Event) -> float | None:
    """The edge's confidence in a portal pass's direction, for its ledger row.

    Only for a pass the edge gave a direction with its read evidence: a resolved pass
    (``server.commands.unresolved``) is rebuilt without ``reads`` and its direction is a person's
    word, not a confidence.
    """
    if event.direction is None or event.reads is None:
        return None
    return event.confidence


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
        site=inp.site,
    )


def receive_unit(inp: RuleInput) -> Outcome:
    """An inbound pass of a tagged unit: receipt into the read point's inbound location.

    A unit in transit (shipped on a transfer order) is moved from its transit location
    instead, which counts it as received on the transfer order.
    """
    target = receipt_location(inp)
    unit = inp.unit
    if unit is not None and unit.status == "in_transit" and unit.location and not inp.late:
        return Outcome(
            movements=(_movement(inp, "transfer", 1, unit.location, target),),
            units=(_unit_after(inp, target, "in_stock"),),
        )
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
        movements=(_movement(inp, "receipt", 1, None, target),),
        units=(_unit_after(inp, target, "in_stock"),),
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
        movements=(_movement(inp, "shipment", 1, source, None),),
        units=(_unit_after(inp, None, "shipped"),),
        alerts=alerts,
    )


def receipt_location(inp: RuleInput) -> str:
    """Where a receipt puts the goods: the scanned location, else the inbound location."""
    return inp.event.biz_location or inp.read_point.inbound_location


def shipment_location(inp: RuleInput) -> str:
    """Where a barcode shipment takes the goods from (see the module docstring)."""
    event = inp.event
    return event.source_location or event.biz_location or inp.read_point.inbound_location


def receive_quantity(inp: RuleInput) -> Outcome:
    """An inbound barcode scan: receipt of its quantity where it was scanned."""
    assert inp.event.quantity is not None
    return Outcome(
        movements=(_movement(inp, "receipt", inp.event.quantity.qty, None, receipt_location(inp)),)
    )


def ship_quantity(inp: RuleInput) -> Outcome:
    """An outbound barcode scan: shipment of its quantity from where it was scanned."""
    assert inp.event.quantity is not None
    return Outcome(
        movements=(
            _movement(inp, "shipment", inp.event.quantity.qty, shipment_location(inp), None),
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


def rule_for(event: Event, read_point: ReadPoint) -> StockRule | StepRule | None:
    """The rule that takes ``event`` at ``read_point``, or None (no stock effect).

    Business steps with a rule of their own (``server.rules.steps``: counts, picks, moves)
    come first; other events are passes, chosen by identity, direction and outbound.
    """
    step = step_rule_for(event)
    if step is not None:
        return step
    if event.direction is None or event.quantities is not None:
        return None
    identity: Identity = "epc" if event.epc is not None else "quantity"
    outbound = read_point.outbound if event.direction == "out" else None
    return _RULES_BY_KEY.get((identity, event.direction, outbound))


def is_undirected_pass(event: Event) -> bool:
    """A portal pass of a tagged unit that the edge could not give a direction.

    Portal passes are told from other sightings by their per-side evidence
    (``reads.outside_count`` / ``inside_count``, which only a door's pass tracker sets); a
    shelf or cooldown reader's sighting has none and stays a sighting.
    """
    reads = event.reads
    return (
        event.direction is None
        and event.epc is not None
        and reads is not None
        and (reads.outside_count is not None or reads.inside_count is not None)
    )


def _new_item_alert(item: ItemKey, inp: RuleInput) -> AlertSpec:
    if item.gtin is not None:
        return UNKNOWN_ITEM.raise_(item.gtin, inp.evidence())
    scheme = epc_scheme(inp.event.epc or "")
    return UNIDENTIFIED_EPC.raise_(item.sku, inp.evidence(), scheme=scheme)


def plan(
    events: Iterable[Event],
    state: StockState,
    read_points: Mapping[str, ReadPoint],
    policy: Policy = DEFAULT_POLICY,
) -> Plan:
    """The effects of ``events`` on a store in ``state``. Pure: no I/O, no clock.

    Events are taken in event-time order (ties by event id) so a unit's state inside one
    batch evolves as it would have in real time. Each rule's outcome then passes the order
    book (``server.rules.orders``), which counts receipts and shipments against open order
    lines and turns shipments on transfer orders into stock in transit. A tagged event with
    no rule (no direction, a departure) moves nothing, but a known unit's life cycle is
    still checked (``server.rules.units``).

    Raises:
        KeyError: an event names a read point missing from ``read_points`` (the caller
            dead-letters those before planning).
    """
    result = Plan()
    for _ in plan_in_steps(result, events, state, read_points, policy):
        pass
    return result


def plan_in_steps(
    result: Plan,
    events: Iterable[Event],
    state: StockState,
    read_points: Mapping[str, ReadPoint],
    policy: Policy = DEFAULT_POLICY,
    *,
    step: int = PLAN_STEP_EVENTS,
) -> Iterator[int]:
    """``plan`` into ``result``, pausing after every ``step`` events (yields how many are
    planned so far); ``result`` is complete once the iterator is exhausted.

    Ingest plans a group of thousands of events on the event loop that also runs the
    write transaction before it (``server.ingest.planning``); between steps it lets the
    loop run, so the writer's next statement waits for a step (about 2 ms), not for the
    whole group.
    """
    units = dict(state.units)
    known = set(state.known_items)
    book = OrderBook(state.orders, policy, state.ordering_sites)
    batch = BatchView(units=units, movements=result.movements, counts=state.counts)
    for planned, event in enumerate(sorted(events, key=EVENT_ORDER)):
        if planned and planned % step == 0:
            yield planned
        read_point = read_points[event.read_point]
        site = event_site(read_point)
        unit = units.get(event.epc) if event.epc else None
        rule = rule_for(event, read_point)
        if event.epc is not None:
            _sighted(result, event)
        if rule is None:
            if is_undirected_pass(event):
                # Never silent: kept for an operator to resolve (server.commands.unresolved); its
                # item is created now, as a receipt would, so the pass can name it.
                inp = _rule_input(result, known, event, read_point, unit, site, policy, batch)
                result.unresolved.append(UnresolvedPass(event, inp.item.ref, site))
                result.alerts.append(_unresolved_alert(event, site))
            if unit is not None:
                result.alerts.extend(lifecycle_alerts(event, unit, site, policy, sighting=True))
                gone = departure(event, read_point, unit)
                if gone is not None:
                    result.departures[gone.epc] = gone
            continue
        inp = _rule_input(result, known, event, read_point, unit, site, policy, batch)
        if unit is not None:
            result.alerts.extend(
                lifecycle_alerts(event, unit, site, policy, sighting=rule.sighting)
            )
        outcome = book.settle(inp, rule.effect(inp))
        result.movements.extend(outcome.movements)
        for alert in outcome.alerts:
            _add_alert(result, alert)
        for cleared in outcome.cleared:
            _clear_alert(result, cleared)
        result.counts.extend(outcome.counts)
        for new in outcome.units:
            current = units.get(new.epc)
            if current is None or current.is_older_than(new.last_event_time, new.last_event_id):
                units[new.epc] = new
                result.units[new.epc] = new
                if current is not None and current.status == "missing" != new.status:
                    _clear_alert(result, (UNIT_MISSING.kind, new.epc))
    result.order_updates = book.deltas()
    # A unit read again after it left its shelf (in this batch) is not missing.
    for epc, gone in list(result.departures.items()):
        if result.sightings[epc] > (gone.departed_at, gone.event_id):
            del result.departures[epc]


def _unresolved_alert(event: Event, site: str) -> AlertSpec:
    evidence: dict[str, object] = {
        "read_point": event.read_point,
        "event_id": event.event_id,
        "event_time": event.event_time.isoformat(),
        "epc": event.epc,
        "group": event.group,
        "reason": event.reads.reason if event.reads is not None else None,
    }
    return UNRESOLVED_PASSES.raise_(event.read_point, evidence, site=site)


def _rule_input(
    result: Plan,
    known: set[str],
    event: Event,
    read_point: ReadPoint,
    unit: UnitState | None,
    site: str,
    policy: Policy,
    batch: BatchView,
) -> RuleInput:
    """The rules' input for ``event``; the creation of its items the store does not hold yet
    (with an alert) goes into ``result``."""
    keys = event_items(event)
    inp = RuleInput(
        event, read_point, keys[0] if keys else NO_ITEM, unit, site=site, policy=policy, batch=batch
    )
    for key in keys:
        if key.ref not in known:
            known.add(key.ref)
            result.new_items[key.ref] = key
            result.alerts.append(_new_item_alert(key, inp))
    return inp


def _sighted(result: Plan, event: Event) -> None:
    assert event.epc is not None
    seen = (event.event_time, event.event_id)
    known = result.sightings.get(event.epc)
    if known is None or seen > known:
        result.sightings[event.epc] = seen


def _add_alert(result: Plan, alert: AlertSpec) -> None:
    # A later event raising what an earlier one cleared: it holds again.
    key = (alert.kind, alert.subject)
    if key in result.cleared:
        result.cleared.remove(key)
    result.alerts.append(alert)


def _clear_alert(result: Plan, key: tuple[str, str]) -> None:
    # A later event ending what an earlier one raised: the batch ends with it cleared.
    result.alerts[:] = [alert for alert in result.alerts if (alert.kind, alert.subject) != key]
    if key not in result.cleared:
        result.cleared.append(key)
