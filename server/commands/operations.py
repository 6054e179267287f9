"""Stock operations people record through the API: adjustments, transfers and reversals.

Each operation appends ledger rows (and updates balances and unit states) through
``server.ingest.ledger_writes.write_plan``, in one transaction; nothing is ever edited or deleted.

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
  ``MAX_FUTURE`` ahead). A reversal cannot predate its original, and an operation on a
  unit must be later than the unit's newest event (the unit's state is decided by event
  time, and an older operation could not change it).
- **Retries.** Each operation gets an event id (``api:<uuid>``, or
  ``api:<key name>:<request_id>`` when the client sends a ``request_id``) that is claimed
  in ``seen_events`` like a gateway's. Sending the same ``request_id`` again returns the
  rows of the first call instead of applying the operation twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import clear_alert, open_alerts
from server.commands.locations import missing_locations
from server.commands.masterdata import NAME_PATTERN, Gtin, Sku
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.ingest.claims import claim_events
from server.ingest.ledger_writes import write_plan
from server.ingest.negative_stock import check_stock
from server.queries.views import MovementView
from server.rules.model import ItemKey, LedgerKind, Movement, Plan, UnitState, UnitStatus
from server.rules.points import LOCATION_PATTERN, MAX_LOCATION_LENGTH
from server.rules.policy import DEFAULT_POLICY, Policy
from server.store.schema.core import items, ledger, units
from server.store.schema.master import MAX_NOTE
from server.store.sites import site_of
from wire.identifiers import gtin_of

AdjustmentReason = Literal["lost", "stolen", "damaged", "expired", "found", "correction"]
MAX_FUTURE = timedelta(minutes=5)
"""How far ahead of the server's clock an operation's event time may be (clock skew)."""
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_OPERATION_QUANTITY = 1_000_000_000
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
EPC_PATTERN = r"^urn:epc:[A-Za-z0-9:._%-]+$"
API_EVENT_PREFIX = "api:"


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

Note = Annotated[str, Field(min_length=1, max_length=MAX_NOTE, pattern=NAME_PATTERN)]
Location = Annotated[
    str, Field(pattern=LOCATION_PATTERN, min_length=1, max_length=MAX_LOCATION_LENGTH)
]
Epc = Annotated[str, Field(min_length=9, max_length=200, pattern=EPC_PATTERN)]
RequestId = Annotated[
    str,
    Field(
        pattern=REQUEST_ID_PATTERN,
        description="Optional client-chosen id; sending it again returns the first result.",
    ),
]


class _Operation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note | None = None
    event_time: datetime | None = None
    """When it happened; no offset means UTC; default now."""
    request_id: RequestId | None = None


class _ItemOperation(_Operation):
    sku: Sku | None = None
    gtin: Gtin | None = None
    epc: Epc | None = None
    """A tagged unit; ``sku`` or ``gtin`` beside it name the item of a unit never seen."""

    @model_validator(mode="after")
    def _one_identity(self) -> _ItemOperation:
        if self.sku is not None and self.gtin is not None:
            raise ValueError("give sku or gtin, not both")
        if self.sku is None and self.gtin is None and self.epc is None:
            raise ValueError("give sku, gtin or epc")
        return self


class AdjustmentRequest(_ItemOperation):
    """Stock found, lost, stolen, damaged, expired, or corrected at a location."""

    reason: AdjustmentReason
    location: Location | None = None
    """Required for quantities and found units; a lost unit is taken from where it is."""
    quantity: (
        Annotated[int, Field(ge=-MAX_OPERATION_QUANTITY, le=MAX_OPERATION_QUANTITY)] | None
    ) = None
    """The signed change (``-3``: three fewer); a unit's is +1 or -1 and may be left out."""


class TransferRequest(_ItemOperation):
    """Stock moved from one location to another (also between sites)."""

    from_location: Location | None = None
    """Required for quantities; a unit leaves from where it is."""
    to_location: Location
    quantity: Annotated[int, Field(ge=1, le=MAX_OPERATION_QUANTITY)] | None = None
    """Required for quantities; a unit's is 1 and may be left out."""


class ReversalRequest(_Operation):
    """Cancel a ledger row with a new one (see the module docstring)."""

    movement_id: Annotated[int, Field(ge=1, le=2**63 - 1)]
    note: Note
    """Why the row is wrong (required)."""


class OperationResult(BaseModel):
    """The ledger rows an operation appended."""

    event_id: str
    replayed: bool
    """True when ``request_id`` was seen before: these are the first call's rows."""
    movements: list[MovementView]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the name recorded as actor, and the sites the key is for (empty: all)."""

    name: str
    sites: frozenset[str] = frozenset()

    def check(self, *locations: str | None) -> None:
        """Raise ``Forbidden`` unless every location given is in the caller's sites."""
        if not self.sites:
            return
        for location in locations:
            if location is not None and site_of(location) not in self.sites:
                raise Forbidden(
                    f"this key is restricted to sites {sorted(self.sites)}; location "
                    f"{location!r} is outside them"
                )


@dataclass(frozen=True, slots=True)
class _Item:
    id: int
    key: ItemKey


@dataclass(frozen=True, slots=True)
class _Unit:
    item: _Item
    state: UnitState | None
    """None: never seen."""


def _event_id(caller: Caller, request_id: str | None) -> str:
    if request_id is not None:
        return f"{API_EVENT_PREFIX}{caller.name}:{request_id}"
    return f"{API_EVENT_PREFIX}{uuid.uuid4().hex}"


def _event_time(value: datetime | None, now: datetime) -> datetime:
    if value is None:
        return now
    try:
        when = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as err:
        raise Invalid("event_time", "is out of range in UTC") from err
    if when > now + MAX_FUTURE:
        raise Invalid("event_time", f"is in the future (the server's time is {now.isoformat()})")
    if when < EARLIEST:
        raise Invalid("event_time", f"is before {EARLIEST.date().isoformat()}")
    return when


def _movement_columns() -> list[sa.ColumnElement[Any]]:
    return [
        items.c[name] if name in ("sku", "gtin") else ledger.c[name]
        for name in MovementView.model_fields
    ]


async def _rows_of(conn: AsyncConnection, event_id: str) -> list[MovementView]:
    rows = await conn.execute(
        sa.select(*_movement_columns())
        .join(items, items.c.id == ledger.c.item_id)
        .where(ledger.c.event_id == event_id)
        .order_by(ledger.c.id)
    )
    return [MovementView.model_validate(row._mapping) for row in rows]


async def _claim(conn: AsyncConnection, event_id: str, now: datetime) -> bool:
    return bool(await claim_events(conn, [event_id], now))


async def _replay(conn: AsyncConnection, event_id: str, matches: Any) -> OperationResult:
    rows = await _rows_of(conn, event_id)
    if not rows or not all(matches(row) for row in rows):
        raise Conflict(
            "request_id was used before for a different operation; choose a new request_id"
        )
    return OperationResult(event_id=event_id, replayed=True, movements=rows)


def _item(row: Any) -> _Item:
    return _Item(id=row.id, key=ItemKey(gtin=row.gtin, sku=row.sku, name=row.name))


async def _item_by(conn: AsyncConnection, field: str, value: str) -> _Item:
    column = items.c.sku if field == "sku" else items.c.gtin
    row = (
        await conn.execute(
            sa.select(items.c.id, items.c.gtin, items.c.sku, items.c.name).where(column == value)
        )
    ).first()
    if row is None:
        raise Invalid(field, f"no item with {field.upper()} {value!r}")
    return _item(row)


async def _item_by_id(conn: AsyncConnection, item_id: int) -> _Item:
    row = (
        await conn.execute(
            sa.select(items.c.id, items.c.gtin, items.c.sku, items.c.name).where(
                items.c.id == item_id
            )
        )
    ).one()
    return _item(row)


async def _unit_row(conn: AsyncConnection, epc: str) -> Any:
    # FOR UPDATE (PostgreSQL): two operations on one unit run one after the other.
    return (
        await conn.execute(
            sa.select(
                units.c.item_id,
                units.c.location_id,
                units.c.status,
                units.c.last_event_time,
                units.c.last_event_id,
            )
            .where(units.c.epc == epc)
            .with_for_update()
        )
    ).first()


async def _resolve(conn: AsyncConnection, request: _ItemOperation) -> tuple[_Item, _Unit | None]:
    """The item an operation is about, and its unit when it names an EPC."""
    named: _Item | None = None
    if request.sku is not None:
        named = await _item_by(conn, "sku", request.sku)
    elif request.gtin is not None:
        named = await _item_by(conn, "gtin", request.gtin)
    if request.epc is None:
        assert named is not None  # the request model wants sku, gtin or epc
        return named, None
    row = await _unit_row(conn, request.epc)
    if row is not None:
        item = await _item_by_id(conn, row.item_id)
        if named is not None and named.id != item.id:
            raise Conflict(f"unit {request.epc} is of item {item.key.sku!r}, not {named.key.sku!r}")
        state = UnitState(
            epc=request.epc,
            item=item.key.ref,
            location=row.location_id,
            status=row.status,
            last_event_time=row.last_event_time,
            last_event_id=row.last_event_id,
        )
        return item, _Unit(item, state)
    if named is None:
        gtin = gtin_of(request.epc)
        if gtin is None:
            raise Invalid(
                "epc", "no unit with this EPC has been seen and it names no GTIN; give its sku"
            )
        try:
            named = await _item_by(conn, "gtin", gtin)
        except Invalid as err:
            raise Invalid(
                "epc", f"no unit with this EPC has been seen and no item has its GTIN {gtin}"
            ) from err
    return named, _Unit(named, None)


async def _require_locations(conn: AsyncConnection, **fields: str) -> None:
    missing = set(await missing_locations(conn, list(fields.values())))
    for field, location in fields.items():
        if location in missing:
            raise Invalid(field, f"no location {location!r}; create it first")


def _after_last_event(unit: UnitState | None, when: datetime) -> None:
    if unit is not None and when <= unit.last_event_time:
        raise Conflict(
            f"unit {unit.epc} has an event at {unit.last_event_time.isoformat()}; an operation "
            "on it must be later than that"
        )


async def _write(
    conn: AsyncConnection,
    movements: Sequence[Movement],
    unit_states: Sequence[UnitState],
    item: _Item,
    caller: Caller,
    event_id: str,
    known_locations: set[str],
    now: datetime,
    policy: Policy,
    *,
    refusable: bool = True,
) -> OperationResult:
    plan = Plan(movements=list(movements), units={state.epc: state for state in unit_states})
    item_ids = {item.key.ref: item.id}
    # Always with a row lock: two requests taking the last units of one bin queue here.
    check = await check_stock(conn, plan, item_ids, policy, refusable=refusable, lock=True)
    for shortfall in check.refused.values():
        movement = shortfall.movement
        raise Conflict(
            f"{movement.from_location} has {shortfall.on_hand} of {item.key.sku!r} on hand, "
            f"fewer than the {movement.quantity} this takes out; record what was found or "
            f"corrected first ([operations] negative_stock is 'refuse' at site {shortfall.site})"
        )
    await write_plan(
        conn,
        plan,
        item_ids,
        known_locations=known_locations,
        actor=caller.name,
        now=now,
    )
    for kind, subject in check.cleared:
        await clear_alert(conn, kind, subject, reason="a stock operation ended it", now=now)
    await open_alerts(conn, check.alerts, None, now)
    return OperationResult(
        event_id=event_id, replayed=False, movements=await _rows_of(conn, event_id)
    )


def _movement(
    request: _Operation,
    event_id: str,
    when: datetime,
    item: _Item,
    epc: str | None,
    source: str | None,
    target: str | None,
    quantity: int,
    kind: LedgerKind,
    reason: str | None,
    reverses: int | None = None,
) -> Movement:
    return Movement(
        event_id=event_id,
        event_time=when,
        item=item.key,
        epc=epc,
        from_location=source,
        to_location=target,
        quantity=quantity,
        kind=kind,
        read_point=None,
        reason=reason,
        note=request.note,
        reverses=reverses,
    )


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
    event_id = _event_id(caller, request.request_id)
    if not await _claim(conn, event_id, now):
        return await _replay(conn, event_id, lambda row: row.reason == request.reason)
    if rule.note_required and request.note is None:
        raise Invalid("note", f"a {request.reason!r} adjustment needs a note saying why")
    when = _event_time(request.event_time, now)
    item, unit = await _resolve(conn, request)
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
    await _require_locations(conn, location=request.location)
    source, target = (request.location, None) if sign < 0 else (None, request.location)
    movement = _movement(
        request, event_id, when, item, None, source, target, abs(quantity), rule.kind, rule.reason
    )
    return await _write(conn, [movement], [], item, caller, event_id, known_locations, now, policy)


async def _adjust_unit(
    conn: AsyncConnection,
    request: AdjustmentRequest,
    rule: ReasonRule,
    item: _Item,
    unit: _Unit,
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
    _after_last_event(state, when)
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
        await _require_locations(conn, location=request.location)
        source, target, location = None, request.location, request.location
    movement = _movement(
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
    return await _write(
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
    event_id = _event_id(caller, request.request_id)
    if not await _claim(conn, event_id, now):
        return await _replay(conn, event_id, lambda row: row.kind == "transfer")
    when = _event_time(request.event_time, now)
    item, unit = await _resolve(conn, request)
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
        _after_last_event(state, when)
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
    await _require_locations(conn, from_location=source, to_location=target)
    movement = _movement(
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
    return await _write(
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
    event_id = _event_id(caller, request.request_id)
    if not await _claim(conn, event_id, now):
        return await _replay(conn, event_id, lambda row: row.reverses == request.movement_id)
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
    when = _event_time(request.event_time, now)
    if when < original.event_time:
        raise Invalid(
            "event_time",
            f"is before the event time of movement {original.id} "
            f"({original.event_time.isoformat()})",
        )
    item = await _item_by_id(conn, original.item_id)
    states: list[UnitState] = []
    if original.epc is not None:
        latest = await _latest_effective(conn, original.epc)
        if latest != original.id:
            raise Conflict(
                f"unit {original.epc} moved after movement {original.id} (movement {latest}); "
                "reverse its movements newest first"
            )
        row = await _unit_row(conn, original.epc)
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
    movement = _movement(
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
    return await _write(
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
    "AdjustmentReason",
    "AdjustmentRequest",
    "Caller",
    "OperationResult",
    "ReasonRule",
    "ReversalRequest",
    "TransferRequest",
    "adjust",
    "reverse",
    "transfer",
]
