"""Rules chosen by business step: moves, picks and cycle counts from shelf readers and scanners.

``STEP_RULES`` is a table of frozen descriptions: the CBV business steps a rule takes, the
identity it needs (a tagged unit, a barcode quantity, or a count's ``quantities``), what it
needs of ``biz_location``, and its pure effect. ``server.rules.stock.rule_for`` asks this
table first; events it does not take are passes (receiving and shipping at portals).

The contract with the edge, and the decisions behind it:

- **Zone arrivals and put-away of units** (biz step ``arriving`` from a shelf reader's
  ``[[zones]]``, or ``storing``): the unit is now at ``biz_location``, or, when the event
  names none, at the read point's ``inbound_location`` (configure a shelf reader's read
  point with its shelf as ``inbound_location``). A unit in stock (or in transit) elsewhere
  is transferred there; a unit already there moves nothing; a unit never seen, ``missing``
  or ``shipped`` is physically there after all, so it comes back into stock with a
  ``count_adjustment``. Departures (``departing``) have no rule: where the unit went is
  told by the next arrival, so a departure is a sighting only.
- **Barcode moves** (``storing`` with a quantity: a scanner in move mode): the quantity
  moves from ``source_location`` (the source label the handheld scanned, or its configured
  ``move_from``) to ``biz_location`` (the destination). An event that names no source
  moves from the read point's ``inbound_location`` (where that scanner's receive mode puts
  goods when no location is scanned): a put-away from receiving.
- **Picks** (``picking``): goods go to the pick zone of the event's site
  (``[operations] pick_zone``, ``wh1.staging``): a unit from where it is (like an arrival),
  a barcode quantity from the location the handheld scanned (``source_location``, else
  ``biz_location``, else the read point's ``inbound_location``). A pick does not ship
  anything; the outbound pass at the dock does, against the sales order.
- **Cycle counts** (``cycle_counting`` with ``quantities``): ``server.rules.counts``.
- **Late events.** A move or pick older than the unit's newest event moves nothing: the
  newer event already says where the unit is, and a transfer from a place it has since
  left would break the balances.
- Ledger rows these rules write carry the business step as ``reason`` (``arriving``,
  ``storing``, ``picking``, ``cycle_counting``), so history tells them apart.
- **biz_location** and **source_location** must be location ids (``wh1.aisle.3``) outside
  the reserved ``transit`` site; an event that breaks this is dead-lettered with a reason
  that says so (``location_problem``), and so is a barcode move or count without a
  ``biz_location``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from server.rules.counts import count_location
from server.rules.model import Effect, Movement, Outcome, RuleInput, UnitState
from server.rules.points import LOCATION_PATTERN, MAX_LOCATION_LENGTH
from server.rules.policy import TRANSIT_SITE, event_site, site_of
from wire.models import Event

StepIdentity = Literal["epc", "quantity", "quantities"]
LocationNeed = Literal["required", "optional"]
MoveKind = Literal["transfer", "count_adjustment"]

ARRIVING = "arriving"
STORING = "storing"
PICKING = "picking"
CYCLE_COUNTING = "cycle_counting"

_LOCATION = re.compile(LOCATION_PATTERN)


@dataclass(frozen=True, slots=True)
class StepRule:
    """One row of the step table.

    Args:
        name: for logs and docs.
        steps: the ``biz_step`` values the rule takes.
        identity: what the event must identify.
        location: whether the rule needs ``biz_location`` or uses it when given.
        effect: the pure function that turns the event into effects.
        sighting: whether a shipped unit seen by the event raises
            ``unit_seen_after_shipped`` (``server.rules.units``).
    """

    name: str
    steps: frozenset[str]
    identity: StepIdentity
    location: LocationNeed
    effect: Effect
    sighting: bool = True


def _movement(
    inp: RuleInput, kind: MoveKind, quantity: int, source: str | None, target: str | None
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
        reason=inp.event.biz_step,
    )


def place_unit(inp: RuleInput, target: str) -> Outcome:
    """The unit of ``inp`` is at ``target`` now (see the module docstring)."""
    unit = inp.unit
    if inp.late:
        return Outcome()
    held = unit is not None and unit.status in ("in_stock", "in_transit")
    if unit is not None and held and unit.location == target and unit.status == "in_stock":
        return Outcome()
    if unit is not None and held and unit.location is not None:
        movement = _movement(inp, "transfer", 1, unit.location, target)
    else:
        movement = _movement(inp, "count_adjustment", 1, None, target)
    assert inp.event.epc is not None
    after = UnitState(
        epc=inp.event.epc,
        item=inp.item.ref,
        location=target,
        status="in_stock",
        last_event_time=inp.event.event_time,
        last_event_id=inp.event.event_id,
        site=inp.site,
    )
    return Outcome(movements=(movement,), units=(after,))


def move_unit(inp: RuleInput) -> Outcome:
    """A unit arrived in a zone or was put away: it is at ``biz_location`` now."""
    return place_unit(inp, inp.event.biz_location or inp.read_point.inbound_location)


def pick_unit(inp: RuleInput) -> Outcome:
    """A unit was picked: it is in the pick zone of the event's site now."""
    return place_unit(inp, inp.policy.pick_location(inp.site or event_site(inp.read_point)))


def _move_quantity(inp: RuleInput, source: str, target: str) -> Outcome:
    assert inp.event.quantity is not None
    if source == target:
        return Outcome()
    return Outcome(movements=(_movement(inp, "transfer", inp.event.quantity.qty, source, target),))


def move_quantity(inp: RuleInput) -> Outcome:
    """A barcode move: from ``source_location`` (else the inbound location) to ``biz_location``."""
    assert inp.event.biz_location is not None
    source = inp.event.source_location or inp.read_point.inbound_location
    return _move_quantity(inp, source, inp.event.biz_location)


def pick_source(inp: RuleInput) -> str:
    """Where a barcode pick takes from: the scanned location, else the inbound location."""
    event = inp.event
    return event.source_location or event.biz_location or inp.read_point.inbound_location


def pick_quantity(inp: RuleInput) -> Outcome:
    """A barcode pick: from the scanned location to the pick zone of the event's site."""
    site = inp.site or event_site(inp.read_point)
    return _move_quantity(inp, pick_source(inp), inp.policy.pick_location(site))


STEP_RULES: tuple[StepRule, ...] = (
    StepRule("count", frozenset({CYCLE_COUNTING}), "quantities", "required", count_location),
    StepRule("pick-unit", frozenset({PICKING}), "epc", "optional", pick_unit),
    StepRule("pick-quantity", frozenset({PICKING}), "quantity", "optional", pick_quantity),
    StepRule("move-unit", frozenset({ARRIVING, STORING}), "epc", "optional", move_unit),
    StepRule("move-quantity", frozenset({STORING}), "quantity", "required", move_quantity),
)

_STEP_RULES_BY_KEY: Mapping[tuple[str, StepIdentity], StepRule] = {
    (step, rule.identity): rule for rule in STEP_RULES for step in rule.steps
}


def _identity(event: Event) -> StepIdentity:
    if event.epc is not None:
        return "epc"
    return "quantity" if event.quantity is not None else "quantities"


def step_rule_for(event: Event) -> StepRule | None:
    """The step rule that takes ``event``, or None (it is a pass, or has no effect)."""
    return _STEP_RULES_BY_KEY.get((event.biz_step, _identity(event)))


def _bad_location(field: str, location: str | None) -> str | None:
    if location is None:
        return None
    if len(location) > MAX_LOCATION_LENGTH or not _LOCATION.match(location):
        return (
            f"{field} {location[:MAX_LOCATION_LENGTH]!r} is not a location id "
            "(a dotted path such as wh1.aisle.3)"
        )
    if site_of(location) == TRANSIT_SITE:
        return f"{field} {location!r} is in the reserved site {TRANSIT_SITE!r}"
    return None


def location_problem(event: Event) -> str | None:
    """Why ``event`` cannot be applied for its locations; None when it can.

    ``biz_location`` and ``source_location`` are checked on every event that names them
    (receipts and shipments use them too, ``server.rules.stock``).
    """
    problem = _bad_location("biz_location", event.biz_location) or _bad_location(
        "source_location", event.source_location
    )
    if problem is not None:
        return problem
    if event.biz_location is None:
        rule = step_rule_for(event)
        if rule is not None and rule.location == "required":
            return f"a {event.biz_step} event of a {rule.identity} needs biz_location"
    return None
