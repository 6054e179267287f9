"""The steps every stock operation takes, in ``server.commands.operations``' words.

Its event id (``api:<uuid>``, or ``api:<key name>:<request_id>``) claimed in ``seen_events``,
and the first call's rows when it was claimed before (``replay``); its event time; the item or
unit it names; the ledger row it appends, written with the stock check of its site's policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import clear_alert, open_alerts
from server.commands.locations import missing_locations
from server.commands.operation_models import (
    Caller,
    ItemOperationRequest,
    OperationRequest,
    OperationResult,
)
from server.errors import Conflict, Invalid
from server.ingest.claims import claim_events
from server.ingest.ledger_writes import write_plan
from server.ingest.negative_stock import check_stock
from server.queries.views import MovementView
from server.rules.model import ItemKey, LedgerKind, Movement, Plan, UnitState
from server.rules.policy import Policy
from server.store.schema.core import items, ledger, units
from wire.identifiers import gtin_of

MAX_FUTURE = timedelta(minutes=5)
"""How far ahead of the server's clock an operation's event time may be (clock skew)."""
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
API_EVENT_PREFIX = "api:"


@dataclass(frozen=True, slots=True)
class Item:
    """An item an operation is about: its row id and its key."""

    id: int
    key: ItemKey


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit an operation names, with its state as the store holds it."""

    item: Item
    state: UnitState | None
    """None: never seen."""


def new_event_id(caller: Caller, request_id: str | None) -> str:
    """The operation's event id: the same for the same caller and ``request_id``."""
    if request_id is not None:
        return f"{API_EVENT_PREFIX}{caller.name}:{request_id}"
    return f"{API_EVENT_PREFIX}{uuid.uuid4().hex}"


def event_time(value: datetime | None, now: datetime) -> datetime:
    """When the operation takes effect: ``value`` in UTC, or ``now``; ``Invalid`` if off."""
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


async def claim(conn: AsyncConnection, event_id: str, now: datetime) -> bool:
    """Claim the event id in ``seen_events``; False when it was claimed before (a retry)."""
    return bool(await claim_events(conn, [event_id], now))


async def replay(
    conn: AsyncConnection, event_id: str, matches: Callable[[MovementView], bool]
) -> OperationResult:
    """The first call's rows; ``Conflict`` when they are not of this operation (``matches``)."""
    rows = await _rows_of(conn, event_id)
    if not rows or not all(matches(row) for row in rows):
        raise Conflict(
            "request_id was used before for a different operation; choose a new request_id"
        )
    return OperationResult(event_id=event_id, replayed=True, movements=rows)


def _item(row: Any) -> Item:
    return Item(id=row.id, key=ItemKey(gtin=row.gtin, sku=row.sku, name=row.name))


async def _item_by(conn: AsyncConnection, field: str, value: str) -> Item:
    column = items.c.sku if field == "sku" else items.c.gtin
    row = (
        await conn.execute(
            sa.select(items.c.id, items.c.gtin, items.c.sku, items.c.name).where(column == value)
        )
    ).first()
    if row is None:
        raise Invalid(field, f"no item with {field.upper()} {value!r}")
    return _item(row)


async def item_by_id(conn: AsyncConnection, item_id: int) -> Item:
    """The item with ``item_id`` (which exists: a ledger or unit row names it)."""
    row = (
        await conn.execute(
            sa.select(items.c.id, items.c.gtin, items.c.sku, items.c.name).where(
                items.c.id == item_id
            )
        )
    ).one()
    return _item(row)


async def unit_row(conn: AsyncConnection, epc: str) -> Any:
    """The unit's row, locked for the transaction; None if it was never seen."""
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


async def resolve_item(
    conn: AsyncConnection, request: ItemOperationRequest
) -> tuple[Item, Unit | None]:
    """The item an operation is about, and its unit when it names an EPC."""
    named: Item | None = None
    if request.sku is not None:
        named = await _item_by(conn, "sku", request.sku)
    elif request.gtin is not None:
        named = await _item_by(conn, "gtin", request.gtin)
    if request.epc is None:
        assert named is not None  # the request model wants sku, gtin or epc
        return named, None
    row = await unit_row(conn, request.epc)
    if row is not None:
        item = await item_by_id(conn, row.item_id)
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
        return item, Unit(item, state)
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
    return named, Unit(named, None)


async def require_locations(conn: AsyncConnection, **fields: str) -> None:
    """Raise ``Invalid`` naming the first field whose location does not exist."""
    missing = set(await missing_locations(conn, list(fields.values())))
    for field, location in fields.items():
        if location in missing:
            raise Invalid(field, f"no location {location!r}; create it first")


def after_last_event(unit: UnitState | None, when: datetime) -> None:
    """Raise ``Conflict`` unless ``when`` is later than the unit's newest event."""
    if unit is not None and when <= unit.last_event_time:
        raise Conflict(
            f"unit {unit.epc} has an event at {unit.last_event_time.isoformat()}; an operation "
            "on it must be later than that"
        )


async def write_operation(
    conn: AsyncConnection,
    movements: Sequence[Movement],
    unit_states: Sequence[UnitState],
    item: Item,
    caller: Caller,
    event_id: str,
    known_locations: set[str],
    now: datetime,
    policy: Policy,
    *,
    refusable: bool = True,
) -> OperationResult:
    """Append the rows and unit states after the stock check; the rows as written.

    Raises:
        Conflict: the check refuses it (``refusable`` and the site's policy is ``refuse``).
    """
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


def ledger_movement(
    request: OperationRequest,
    event_id: str,
    when: datetime,
    item: Item,
    epc: str | None,
    source: str | None,
    target: str | None,
    quantity: int,
    kind: LedgerKind,
    reason: str | None,
    reverses: int | None = None,
) -> Movement:
    """The ledger row of an operation (the request gives its note)."""
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


__all__ = [
    "Item",
    "Unit",
    "after_last_event",
    "claim",
    "event_time",
    "item_by_id",
    "ledger_movement",
    "new_event_id",
    "replay",
    "require_locations",
    "resolve_item",
    "unit_row",
    "write_operation",
]
