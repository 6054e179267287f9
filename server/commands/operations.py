"""Stock operations people record through the API: adjustments, transfers and reversals.

Each operation appends ledger rows (and updates balances and unit states) through
``server.ingest.ledger_writes.write_plan``, in one transaction; nothing is ever edited or
deleted. The requests and the result are in ``server.commands.operation_models``, the steps
all three take (event id, event time, the item or unit, the write) in
``server.commands.operation_steps``.

Decisions written down here:

- **Adjustments** carry a reason code (``ADJUSTMENT_REASONS``): ``lost``, ``stolen``,
  ``damaged`` and ``expired`` take stock out and are ledger kind ``loss`` (a loss
  always has its reason); ``found`` puts stock in and ``correction`` goes either
  way, both kind ``count_adjustment``. The reason code is the row's ``reason``, the
  person's words its ``note`` (a correction must have one). ``quantity`` is the signed
  change (``-3`` for three lost), so a sign that contradicts the reason is refused.
- **Units.** A unit taken out by an adjustment becomes ``missing`` with no location,
  whatever the reason (lost, stolen, damaged and expired units are all out of stock and not
  shipped; the ledger row says why). A unit ``found`` becomes ``in_stock`` where it was
  found. A unit must be in stock to be lost or transferred, and not in stock to be found.
- **Transfers** move an item's quantity, or one unit, between two existing locations, also
  between sites. A unit's transfer starts where the unit is.
- **Enough stock.** An operation that takes more out of a location than it has on hand
  (loss, negative correction, transfer) follows ``[operations] negative_stock`` of the
  location's site, like the edge's events (``server.rules.negative``): ``refuse`` answers
  409 and writes nothing; ``allow`` (the default) applies it and opens ``negative_stock``,
  which clears once the balance is back at zero or above.
- **Reversals** append a row of the same kind and quantity with the locations swapped and
  ``reverses`` naming the original (as EPCIS corrective events do). A reversal cannot be
  reversed, and a row is reversed at most once (a unique index makes that hold under
  concurrency too). A unit's rows are reversed newest first: only its latest row that is
  neither reversed nor a reversal may be reversed, and the unit returns to where the
  original took it from (``in_stock``), or becomes ``missing`` if the original brought it
  in. Reversals are not refused for lack of stock: the original should not have counted.
- **Time.** An operation takes effect at ``event_time`` (default: now; at most
  ``operation_steps.MAX_FUTURE`` ahead). A reversal cannot predate its original, and an
  operation on a unit must be later than the unit's newest event (the unit's state is decided
  by event time, and an older operation could not change it).
- **Retries.** Each operation gets an event id (``api:<uuid>``, or
  ``api:<key name>:<request_id>`` when the client sends a ``request_id``) that is claimed
  in ``seen_events`` like a gateway's. Sending the same ``request_id`` again returns the
  rows of the first call instead of applying the operation twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.operation_models import (
    AdjustmentReason,
    AdjustmentRequest,
    Caller,
    OperationResult,
    ReversalRequest,
    TransferRequest,
)
from server.commands.operation_steps import (
    Item,
    Unit,
    after_last_event,
    claim,
    event_time,
    item_by_id,
    ledger_movement,
    new_event_id,
    replay,
    require_locations,
    resolve_item,
    unit_row,
    write_operation,
)
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.rules.model import LedgerKind, UnitState, UnitStatus
from server.rules.policy import DEFAULT_POLICY, Policy
from server.store.schema.core import ledger


@dataclass(frozen=True, slots=True)
class ReasonRule:
    """What an adjustment reason means.

    Args:
        reason: the code clients send.
        kind: the ledger kind of its rows.
        sign: -1 takes stock out, +1 puts it in, 0 either (the quantity's sign decides).
        note_required: the person must say why.
    """

    reason: AdjustmentReason
    kind: LedgerKind
    sign: Literal[-1, 0, 1]
    note_required: bool = False


ADJUSTMENT_REASONS: Mapping[str, ReasonRule] = {
    rule.reason: rule
    for rule in (
        ReasonRule("lost", "loss", -1),
        ReasonRule("stolen", "loss", -1),
        ReasonRule("damaged", "loss", -1),
        ReasonRule("expired", "loss", -1),
        ReasonRule("found", "count_adjustment", +1),
        ReasonRule("correction", "count_adjustment", 0, note_required=True),
    )
}
UNIT_STATUS_AFTER: Mapping[int, UnitStatus] = {-1: "missing", +1: "in_stock"}
"""A unit's status after an adjustment that takes it out (-1) or puts it in (+1)."""


async def adjust(
    conn: AsyncConnection,
    request: AdjustmentRequest,
    caller: Caller,
    *,
    known_locations: set[str],
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> OperationResult:
    """Record an adjustment (see the module docstring for the rules).

    Raises:
        Invalid: a field names nothing that exists, or contradicts the reason.
        Conflict: the state forbids it (unit not in stock, too little on hand, ...).
        Forbidden: a location is outside the caller's sites.
    """
    rule = ADJUSTMENT_REASONS[request.reason]
    event_id = new_event_id(caller, request.request_id)
    if not await claim(conn, event_id, now):
        return await replay(conn, event_id, lambda row: row.reason == request.reason)
    if rule.note_required and request.note is None:
        raise Invalid("note", f"a {request.reason!r} adjustment needs a note saying why")
    when = event_time(request.event_time, now)
    item, unit = await resolve_item(conn, request)
    if unit is not None:
        assert request.epc is not None
        return await _adjust_unit(
            conn,
            request,
            rule,
            item,
            unit,
            request.epc,
            event_id,
            when,
            caller,
            known_locations,
            now,
            policy,
        )
    quantity = request.quantity
    if quantity is None or quantity == 0:
        raise Invalid("quantity", "give the signed change of the quantity (not 0)")
    sign = 1 if quantity > 0 else -1
    if rule.sign not in (0, sign):
        way = (
            "takes stock out; give a negative"
            if rule.sign < 0
            else "puts stock in; give a positive"
        )
        raise Invalid("quantity", f"a {request.reason!r} adjustment {way} quantity")
    if request.location is None:
        raise Invalid("location", "an adjustment of a quantity needs its location")
    caller.check(request.location)
    await require_locations(conn, location=request.location)
    source, target = (request.location, None) if sign < 0 else (None, request.location)
    movement = ledger_movement(
        request, event_id, when, item, None, source, target, abs(quantity), rule.kind, rule.reason
    )
    return await write_operation(
        conn, [movement], [], item, caller, event_id, known_locations, now, policy
    )


async def _adjust_unit(
    conn: AsyncConnection,
    request: AdjustmentRequest,
    rule: ReasonRule,
    item: Item,
    unit: Unit,
    epc: str,
    event_id: str,
    when: datetime,
    caller: Caller,
    known_locations: set[str],
    now: datetime,
    policy: Policy,
) -> OperationResult:
    if request.quantity not in (None, 1, -1):
        raise Invalid("quantity", "an adjustment of a unit changes stock by exactly 1 (+1 or -1)")
    sign = rule.sign or request.quantity
    if sign is None:
        raise Invalid("quantity", "a unit correction needs quantity +1 (in stock) or -1 (not)")
    if rule.sign and request.quantity is not None and request.quantity != rule.sign:
        raise Invalid("quantity", f"a {request.reason!r} adjustment of a unit is {rule.sign:+d}")
    state = unit.state
    after_last_event(state, when)
    if sign < 0:
        if state is None or state.status != "in_stock" or state.location is None:
            status = "never seen" if state is None else state.status.replace("_", " ")
            raise Conflict(f"unit {epc} is {status}, not in stock; it cannot be taken out")
        if request.location is not None and request.location != state.location:
            raise Conflict(f"unit {epc} is at {state.location}, not at {request.location}")
        caller.check(state.location)
        source, target, location = state.location, None, None
    else:
        if state is not None and state.status == "in_stock":
            raise Conflict(
                f"unit {epc} is in stock at {state.location} already; transfer it instead"
            )
        if request.location is None:
            raise Invalid("location", "say where the unit was found")
        caller.check(request.location)
        await require_locations(conn, location=request.location)
        source, target, location = None, request.location, request.location
    movement = ledger_movement(
        request, event_id, when, item, epc, source, target, 1, rule.kind, rule.reason
    )
    after = UnitState(
        epc=epc,
        item=item.key.ref,
        location=location,
        status=UNIT_STATUS_AFTER[sign],
        last_event_time=when,
        last_event_id=event_id,
    )
    return await write_operation(
        conn, [movement], [after], item, caller, event_id, known_locations, now, policy
    )


async def transfer(
    conn: AsyncConnection,
    request: TransferRequest,
    caller: Caller,
    *,
    known_locations: set[str],
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> OperationResult:
    """Record a transfer between two locations (see the module docstring for the rules).

    Raises:
        Invalid: a field names nothing that exists, or the locations are the same.
        Conflict: the unit is not in stock or not at ``from_location``; too little on hand.
        Forbidden: a location is outside the caller's sites.
    """
    event_id = new_event_id(caller, request.request_id)
    if not await claim(conn, event_id, now):
        return await replay(conn, event_id, lambda row: row.kind == "transfer")
    when = event_time(request.event_time, now)
    item, unit = await resolve_item(conn, request)
    target = request.to_location
    if unit is not None:
        epc = request.epc
        if request.quantity not in (None, 1):
            raise Invalid("quantity", "a unit is transferred whole (quantity 1)")
        state = unit.state
        if state is None or state.status != "in_stock" or state.location is None:
            status = "never seen" if state is None else state.status.replace("_", " ")
            raise Conflict(f"unit {epc} is {status}, not in stock; record it found first")
        if request.from_location is not None and request.from_location != state.location:
            raise Conflict(f"unit {epc} is at {state.location}, not at {request.from_location}")
        source = state.location
        quantity = 1
        after_last_event(state, when)
    else:
        epc = None
        if request.from_location is None:
            raise Invalid("from_location", "a transfer of a quantity needs its from_location")
        if request.quantity is None:
            raise Invalid("quantity", "a transfer of a quantity needs the quantity")
        source, quantity = request.from_location, request.quantity
    if source == target:
        raise Invalid("to_location", f"is the same as from_location ({source})")
    caller.check(source, target)
    await require_locations(conn, from_location=source, to_location=target)
    movement = ledger_movement(
        request, event_id, when, item, epc, source, target, quantity, "transfer", None
    )
    states = []
    if epc is not None:
        states.append(
            UnitState(
                epc=epc,
                item=item.key.ref,
                location=target,
                status="in_stock",
                last_event_time=when,
                last_event_id=event_id,
            )
        )
    return await write_operation(
        conn, [movement], states, item, caller, event_id, known_locations, now, policy
    )


async def _latest_effective(conn: AsyncConnection, epc: str) -> int | None:
    """The unit's newest row that is neither a reversal nor reversed."""
    reversal = ledger.alias("reversal")
    return await conn.scalar(
        sa.select(ledger.c.id)
        .where(
            ledger.c.epc == epc,
            ledger.c.reverses.is_(None),
            ~sa.exists().where(reversal.c.reverses == ledger.c.id),
        )
        .order_by(ledger.c.event_time.desc(), ledger.c.id.desc())
        .limit(1)
    )


async def reverse(
    conn: AsyncConnection,
    request: ReversalRequest,
    caller: Caller,
    *,
    known_locations: set[str],
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> OperationResult:
    """Cancel a ledger row with a new one (see the module docstring for the rules).

    Raises:
        NotFound: no ledger row with that id (or none the caller may see).
        Conflict: the row is a reversal, was reversed already, or is not its unit's latest.
        Invalid: the event time is before the original's.
    """
    event_id = new_event_id(caller, request.request_id)
    if not await claim(conn, event_id, now):
        return await replay(conn, event_id, lambda row: row.reverses == request.movement_id)
    # FOR UPDATE (PostgreSQL): concurrent reversals of one row queue here; the second then
    # sees the first's row. The unique index on ``reverses`` backs this up.
    original = (
        await conn.execute(
            sa.select(ledger).where(ledger.c.id == request.movement_id).with_for_update()
        )
    ).first()
    if original is None:
        raise NotFound(f"no movement with id {request.movement_id}")
    try:
        caller.check(original.from_location, original.to_location)
    except Forbidden as err:
        raise NotFound(f"no movement with id {request.movement_id}") from err
    if original.reverses is not None:
        raise Conflict(
            f"movement {original.id} is itself the reversal of movement {original.reverses}; "
            "a reversal is not reversed (record the movement again instead)"
        )
    earlier = await conn.scalar(sa.select(ledger.c.id).where(ledger.c.reverses == original.id))
    if earlier is not None:
        raise Conflict(f"movement {original.id} was reversed already, by movement {earlier}")
    when = event_time(request.event_time, now)
    if when < original.event_time:
        raise Invalid(
            "event_time",
            f"is before the event time of movement {original.id} "
            f"({original.event_time.isoformat()})",
        )
    item = await item_by_id(conn, original.item_id)
    states: list[UnitState] = []
    if original.epc is not None:
        latest = await _latest_effective(conn, original.epc)
        if latest != original.id:
            raise Conflict(
                f"unit {original.epc} moved after movement {original.id} (movement {latest}); "
                "reverse its movements newest first"
            )
        row = await unit_row(conn, original.epc)
        if row is not None and when <= row.last_event_time:
            raise Conflict(
                f"unit {original.epc} has an event at {row.last_event_time.isoformat()}; "
                "a reversal of its movement must be later than that"
            )
        back = original.from_location
        states.append(
            UnitState(
                epc=original.epc,
                item=item.key.ref,
                location=back,
                status="in_stock" if back is not None else "missing",
                last_event_time=when,
                last_event_id=event_id,
            )
        )
    movement = ledger_movement(
        request,
        event_id,
        when,
        item,
        original.epc,
        original.to_location,
        original.from_location,
        original.quantity,
        original.kind,
        original.reason,
        reverses=original.id,
    )
    # Not refused for lack of stock (the original should not have counted): alerts only.
    return await write_operation(
        conn,
        [movement],
        states,
        item,
        caller,
        event_id,
        known_locations,
        now,
        policy,
        refusable=False,
    )


__all__ = [
    "ADJUSTMENT_REASONS",
    "ReasonRule",
    "adjust",
    "reverse",
    "transfer",
]
