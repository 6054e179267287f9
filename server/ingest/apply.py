"""Applying a batch's events to the store, inside the caller's transaction.

Exactly once, also with several server instances on one PostgreSQL: the first statement
inserts the batch's event ids into ``seen_events`` with ``ON CONFLICT DO NOTHING RETURNING``.
The ids that come back are the ones this transaction owns; a concurrent transaction
inserting the same id waits on the unique index and then gets nothing back, so it skips
them. Everything else (ledger rows, balances, units, items, locations, alerts) is written
with one multi-row statement per table, so a batch costs a handful of round trips however
many events it holds.

Balances are increments (``on_hand = on_hand + excluded.on_hand``), so concurrent batches
commute. A unit's row is only overwritten by a newer event (``ON CONFLICT DO UPDATE ...
WHERE`` on event time, then event id), which keeps "last writer by event time" true even
when two instances race on one unit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from server import rules
from server.alerts.store import clear_alert, open_alerts
from server.commands.asn import Receipt, reconcile_receipts
from server.config.settings import ReadPointSettings
from server.errors import StoreError
from server.ingest.count_basis import counts_of, load_counts, units_where
from server.ingest.negative_stock import settle_plan
from server.ingest.order_book import apply_line_deltas, load_order_book, load_ordering_sites
from server.ingest.pallet_contents import Expansion, expand_pallets, hold_unknown
from server.ingest.shelf_watches import record_watches, watching
from server.ingest.unresolved_rows import insert_unresolved
from server.queries.views import AlertView
from server.rules.items import event_items
from server.rules.model import ItemKey, Plan, StockState, UnitState, UnresolvedPass
from server.rules.policy import DEFAULT_POLICY, Policy
from server.store.dialect import bytewise, execute_many, from_excluded, one_of, upsert
from server.store.schema.core import balances, items, ledger, locations, seen_events, units
from server.store.schema.counts import count_results
from server.store.sites import site_of
from wire.models import Event

LOCATION_KINDS = ("site", "zone")
"""Kind of a location by depth: ``wh1`` is a site, ``wh1.dock`` a zone, deeper ids bins."""


@dataclass(slots=True)
class Applied:
    """What applying one batch did."""

    applied: int = 0
    duplicates: int = 0
    movements: int = 0
    alerts: list[AlertView] = field(default_factory=list)
    new_locations: set[str] = field(default_factory=set)
    """Locations created; add them to ``Store.known_locations`` once the commit succeeded."""
    unresolved: dict[str, int] = field(default_factory=dict)
    """Unresolved passes recorded, per read point (for the metrics, after the commit)."""
    grouped: dict[tuple[str, str], int] = field(default_factory=dict)
    """Portal passes with a direction and a group id, per (read point, direction)."""
    fresh_ids: set[str] = field(default_factory=set)
    """The event ids this call claimed (applied for the first time)."""
    movements_by_event: dict[str, int] = field(default_factory=dict)
    """Ledger rows written per event id (for telling the batches of one call apart)."""
    refused: list[tuple[Event, str]] = field(default_factory=list)
    """Events refused for negative stock (``server.ingest.negative_stock``), with the reason; their
    ids stay claimed (a re-send is a duplicate), the caller dead-letters them."""
    units_written: set[str] = field(default_factory=set)
    """EPCs of the units whose state this wrote (for plans made ahead, ``PlannedEvents``)."""
    items_created: set[str] = field(default_factory=set)
    """``ItemKey.ref`` of the items this created (likewise)."""


def ancestors(location: str) -> list[str]:
    """``wh1.dock.1`` -> ``["wh1", "wh1.dock", "wh1.dock.1"]``."""
    parts = location.split(".")
    return [".".join(parts[: depth + 1]) for depth in range(len(parts))]


def location_kind(location: str) -> str:
    depth = location.count(".")
    return LOCATION_KINDS[depth] if depth < len(LOCATION_KINDS) else "bin"


_CLAIM_IDS = (
    sa.func.unnest(sa.bindparam("event_ids", type_=postgresql.ARRAY(seen_events.c.event_id.type)))
    .table_valued("event_id")
    .render_derived()
)
_CLAIM = (
    postgresql.insert(seen_events)
    .from_select(
        ["event_id", "seen_at"],
        sa.select(_CLAIM_IDS.c.event_id, sa.bindparam("seen_at", type_=seen_events.c.seen_at.type)),
    )
    .on_conflict_do_nothing()
    .returning(seen_events.c.event_id)
)
"""PostgreSQL's claim: insert the ids, get back the ones no other transaction had."""


async def seen_before(conn: AsyncConnection, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` were seen already (a read: it claims nothing)."""
    if not event_ids:
        return set()
    condition, params = one_of(conn, seen_events.c.event_id, "event_ids", event_ids)
    seen = await conn.execute(sa.select(seen_events.c.event_id).where(condition), params)
    return set(seen.scalars())


async def claim_events(conn: AsyncConnection, event_ids: Sequence[str], now: datetime) -> set[str]:
    """Record ``event_ids`` (distinct) as seen; returns those that were not seen before."""
    if not event_ids:
        return set()
    if conn.dialect.name == "sqlite":
        # One writer: the transaction holds SQLite's write lock, so the ids seen before
        # (usually none) cannot change between this read and the insert of the others.
        fresh = set(event_ids).difference(await seen_before(conn, event_ids))
        await execute_many(
            conn,
            "seen events",
            lambda _: seen_events.insert(),
            [{"event_id": event_id, "seen_at": now} for event_id in fresh],
        )
        return fresh
    # Several instances: the insert itself decides, and returns the ids this one won. One
    # statement over an array of the ids (not a row of parameters per id).
    result = await conn.execute(_CLAIM, {"event_ids": list(event_ids), "seen_at": now})
    return set(result.scalars())


async def _load_items(conn: AsyncConnection, keys: Sequence[ItemKey]) -> dict[str, int]:
    gtins = sorted({key.gtin for key in keys if key.gtin is not None})
    skus = sorted({key.sku for key in keys if key.gtin is None})
    conditions: list[sa.ColumnElement[bool]] = []
    params: dict[str, Any] = {}
    if gtins:
        by_gtin, gtin_params = one_of(conn, items.c.gtin, "gtins", gtins)
        conditions.append(by_gtin)
        params |= gtin_params
    if skus:
        by_sku, sku_params = one_of(conn, items.c.sku, "skus", skus)
        conditions.append(sa.and_(items.c.gtin.is_(None), by_sku))
        params |= sku_params
    if not conditions:
        return {}
    rows = await conn.execute(
        sa.select(items.c.id, items.c.gtin, items.c.sku).where(sa.or_(*conditions)), params
    )
    return {gtin if gtin is not None else sku: item_id for item_id, gtin, sku in rows}


async def _load_units(conn: AsyncConnection, epcs: Sequence[str]) -> dict[str, UnitState]:
    if not epcs:
        return {}
    condition, params = one_of(conn, units.c.epc, "epcs", epcs)
    return await units_where(conn, condition, params)


async def _ensure_items(
    conn: AsyncConnection,
    new_items: Mapping[str, ItemKey],
    item_ids: dict[str, int],
    now: datetime,
) -> None:
    missing = [key for ref, key in new_items.items() if ref not in item_ids]
    if not missing:
        return
    # Another instance may create the same item concurrently: DO NOTHING, then read back.
    statement = upsert(conn, items).on_conflict_do_nothing()
    await conn.execute(
        statement,
        [
            {
                "sku": key.sku,
                "gtin": key.gtin,
                "name": key.name,
                "reviewed": False,
                "created_at": now,
            }
            for key in missing
        ],
    )
    item_ids.update(await _load_items(conn, missing))
    # A GTIN whose placeholder SKU is already some other item's real SKU: use a prefix.
    clashing = [key for key in missing if key.ref not in item_ids and key.gtin is not None]
    if clashing:
        await conn.execute(
            statement,
            [
                {
                    "sku": f"gtin:{key.gtin}",
                    "gtin": key.gtin,
                    "name": key.name,
                    "reviewed": False,
                    "created_at": now,
                }
                for key in clashing
            ],
        )
        item_ids.update(await _load_items(conn, clashing))
    still = [key.ref for key in missing if key.ref not in item_ids]
    if still:
        raise StoreError(f"could not create items {still[:5]}: SKU already taken")


async def _ensure_locations(
    conn: AsyncConnection, wanted: set[str], known: set[str], now: datetime
) -> set[str]:
    unknown = {
        location for target in wanted for location in ancestors(target) if location not in known
    }
    if not unknown:
        return set()
    # Parents first, so the self-referencing foreign key holds row by row.
    ordered = sorted(unknown, key=lambda loc: (loc.count("."), loc))
    await conn.execute(
        upsert(conn, locations).on_conflict_do_nothing(),
        [
            {
                "id": location,
                "parent": location.rpartition(".")[0] or None,
                "kind": location_kind(location),
                "created_at": now,
            }
            for location in ordered
        ],
    )
    return unknown


def _balance_upsert(conn: AsyncConnection) -> sa.Insert:
    """A balance moved by a delta (increments commute between concurrent batches)."""
    insert = upsert(conn, balances)
    return insert.on_conflict_do_update(
        index_elements=[balances.c.item_id, balances.c.location_id],
        set_={"on_hand": balances.c.on_hand + insert.excluded.on_hand},
    )


def _unit_upsert(conn: AsyncConnection) -> sa.Insert:
    """A unit's state, replaced only by a newer event (by time, then event id)."""
    insert = upsert(conn, units)
    newer = sa.or_(
        units.c.last_event_time < insert.excluded.last_event_time,
        sa.and_(
            units.c.last_event_time == insert.excluded.last_event_time,
            bytewise(conn, units.c.last_event_id) < bytewise(conn, insert.excluded.last_event_id),
        ),
    )
    return insert.on_conflict_do_update(
        index_elements=[units.c.epc],
        set_=from_excluded(
            insert, "item_id", "location_id", "status", "last_event_time", "last_event_id", "site"
        ),
        where=newer,
    )


async def _write_plan(
    conn: AsyncConnection,
    plan: Plan,
    item_ids: dict[str, int],
    known_locations: set[str],
    actor: str,
    now: datetime,
    result: Applied,
    actors: Mapping[str, str] | None = None,
) -> None:
    await _ensure_items(conn, plan.new_items, item_ids, now)
    wanted = {
        location
        for movement in plan.movements
        for location in (movement.from_location, movement.to_location)
        if location is not None
    } | {unit.location for unit in plan.units.values() if unit.location is not None}
    result.new_locations = await _ensure_locations(conn, wanted, known_locations, now)

    if plan.counts:
        await conn.execute(
            sa.insert(count_results),
            [
                {
                    "event_id": count.event_id,
                    "event_time": count.event_time,
                    "location": count.location,
                    "site": site_of(count.location),
                    "read_point": count.read_point,
                    "item": line.item,
                    "expected": line.expected,
                    "counted": line.counted,
                    "recorded_at": now,
                }
                for count in plan.counts
                for line in count.lines
            ],
        )
    if plan.movements:
        await execute_many(
            conn,
            "ledger rows",
            lambda _: ledger.insert(),
            [
                {
                    "event_id": movement.event_id,
                    "event_time": movement.event_time,
                    "recorded_at": now,
                    "item_id": item_ids[movement.item.ref],
                    "epc": movement.epc,
                    "from_location": movement.from_location,
                    "to_location": movement.to_location,
                    "quantity": movement.quantity,
                    "kind": movement.kind,
                    "reason": movement.reason,
                    "actor": actor
                    if actors is None or movement.event_id is None
                    else actors.get(movement.event_id, actor),
                    "read_point": movement.read_point,
                    "note": movement.note,
                    "reverses": movement.reverses,
                    "confidence": movement.confidence,
                }
                for movement in plan.movements
            ],
        )
        deltas: dict[tuple[int, str], int] = defaultdict(int)
        for movement in plan.movements:
            item_id = item_ids[movement.item.ref]
            if movement.from_location is not None:
                deltas[(item_id, movement.from_location)] -= movement.quantity
            if movement.to_location is not None:
                deltas[(item_id, movement.to_location)] += movement.quantity
        # Sorted, so concurrent PostgreSQL transactions lock balance rows in one order.
        await execute_many(
            conn,
            "balance deltas",
            _balance_upsert,
            [
                {"item_id": item_id, "location_id": location, "on_hand": delta}
                for (item_id, location), delta in sorted(deltas.items())
            ],
        )

    if plan.unresolved:
        by_gateway: dict[str, list[UnresolvedPass]] = defaultdict(list)
        for record in plan.unresolved:
            gateway = actor if actors is None else actors.get(record.event.event_id, actor)
            by_gateway[gateway].append(record)
        for gateway, records in by_gateway.items():
            await insert_unresolved(conn, records, item_ids, gateway, now)
        for record in plan.unresolved:
            point = record.event.read_point
            result.unresolved[point] = result.unresolved.get(point, 0) + 1

    if plan.units:
        await execute_many(
            conn,
            "unit states",
            _unit_upsert,
            [
                {
                    "epc": unit.epc,
                    "item_id": item_ids[unit.item],
                    "location_id": unit.location,
                    "status": unit.status,
                    "last_event_time": unit.last_event_time,
                    "last_event_id": unit.last_event_id,
                    # A state made without a site (API operations) takes its location's.
                    "site": unit.site or (site_of(unit.location) if unit.location else None),
                }
                for unit in sorted(plan.units.values(), key=lambda u: u.epc)
            ],
        )


async def apply_events(
    conn: AsyncConnection,
    events: Sequence[Event],
    read_points: Mapping[str, ReadPointSettings],
    *,
    known_locations: set[str],
    actor: str,
    site: str | None,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    actors: Mapping[str, str] | None = None,
) -> Applied:
    """Apply the events not applied before, inside the caller's transaction.

    Args:
        conn: a connection in a transaction the caller commits.
        events: validated events whose read points are all in ``read_points``.
        read_points: the configured read points by id.
        known_locations: location ids known to exist (read only here).
        actor: recorded on every ledger row (the gateway id).
        site: recorded on the alerts raised.
        now: the recording time.
        policy: what the rules take from the config (travel times, orders, picks).
        actors: the actor of each event by id, where it is not ``actor`` (the events of
            several gateways applied together).
    """
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    fresh_ids = await claim_events(conn, list(unique), now)
    fresh = [event for event_id, event in unique.items() if event_id in fresh_ids]
    result = await apply_fresh(
        conn,
        fresh,
        read_points,
        known_locations=known_locations,
        actor=actor,
        site=site,
        now=now,
        policy=policy,
        actors=actors,
    )
    result.fresh_ids = fresh_ids
    result.duplicates = len(events) - len(fresh)
    return result


async def apply_fresh(
    conn: AsyncConnection,
    fresh: Sequence[Event],
    read_points: Mapping[str, ReadPointSettings],
    *,
    known_locations: set[str],
    actor: str,
    site: str | None,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    actors: Mapping[str, str] | None = None,
) -> Applied:
    """Apply events whose ids are claimed already (``apply_events``; a resolved pass).

    Same arguments as ``apply_events``; ``fresh`` holds distinct event ids this
    transaction owns.
    """
    if not fresh:
        return Applied()
    # A pallet's event stands for its contents (server.rules.pallets); from here on the
    # batch is planned as those.
    expansion = await expand_pallets(conn, fresh, read_points)
    item_ids, state = await _rule_inputs(conn, expansion.events, policy)
    plan = rules.plan(expansion.events, state, read_points, policy)
    return await _apply_plan(
        conn,
        fresh,
        plan,
        _Inputs(item_ids, state, expansion),
        read_points,
        known_locations=known_locations,
        actor=actor,
        site=site,
        now=now,
        policy=policy,
        actors=actors,
    )


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What the rules were given for a plan: item ids by ``ItemKey.ref``, the stock state."""

    item_ids: dict[str, int]
    state: StockState
    expansion: Expansion
    """The events planned (pallets' replaced by their contents)."""


async def _rule_inputs(
    conn: AsyncConnection, planned: Sequence[Event], policy: Policy
) -> tuple[dict[str, int], StockState]:
    """Everything the rules read from the store for ``planned`` (see ``PlannedEvents``)."""
    counts = await load_counts(conn, planned)
    keys = [key for event in planned for key in event_items(event)]
    keys.extend(counts.items.values())
    item_ids = await _load_items(conn, keys)
    epcs = sorted({event.epc for event in planned if event.epc is not None} - set(counts.units))
    loaded = counts.units | await _load_units(conn, epcs)
    book = await load_order_book(conn, item_ids)
    with_orders = "with_orders" in (policy.unexpected_receipts, policy.unexpected_shipments)
    state = StockState(
        units=loaded,
        known_items=frozenset(item_ids),
        counts=counts.bases,
        orders=book,
        ordering_sites=await load_ordering_sites(conn) if with_orders else frozenset(),
    )
    return item_ids, state


async def _apply_plan(
    conn: AsyncConnection,
    fresh: Sequence[Event],
    plan: Plan,
    inputs: _Inputs,
    read_points: Mapping[str, ReadPointSettings],
    *,
    known_locations: set[str],
    actor: str,
    site: str | None,
    now: datetime,
    policy: Policy,
    actors: Mapping[str, str] | None,
) -> Applied:
    """Write ``plan`` (made by the rules for ``fresh``, as ``inputs.expansion``, from
    ``inputs``) in the transaction."""
    result = Applied()
    result.applied = len(fresh)
    for event in fresh:
        if event.group is not None and event.direction is not None:
            key = (event.read_point, event.direction)
            result.grouped[key] = result.grouped.get(key, 0) + 1
    item_ids, state, expansion = inputs.item_ids, inputs.state, inputs.expansion
    planned = expansion.events
    replan = partial(rules.plan, state=state, read_points=read_points, policy=policy)
    plan, refused = await settle_plan(conn, planned, plan, replan, item_ids, policy)
    # A pallet is refused whole: report its own event, not the line that fell short.
    result.refused = [(expansion.pallets.get(e.event_id, e), why) for e, why in refused]
    result.applied -= len(result.refused)
    plan.alerts.extend(
        await hold_unknown(
            conn, expansion.unknown, read_points, actor=actor, actors=actors, now=now
        )
    )
    await _write_plan(conn, plan, item_ids, known_locations, actor, now, result, actors)
    result.units_written = set(plan.units)
    result.items_created = set(plan.new_items)
    if plan.departures or (plan.sightings and watching(read_points)):
        await record_watches(conn, plan, item_ids)
    overfilled = await apply_line_deltas(conn, plan.order_updates, state.orders, policy)
    # Units a supplier's shipping notice listed (server.commands.asn): marked, or alerted if
    # unlisted.
    noticed = await reconcile_receipts(
        conn,
        [
            Receipt(m.epc, item_ids[m.item.ref], m.to_location, m.event_time, m.event_id)
            for m in plan.movements
            if m.kind == "receipt" and m.epc is not None and m.to_location is not None
        ],
    )
    overfilled.extend(noticed)
    result.movements = len(plan.movements)
    by_event: dict[str, int] = defaultdict(int)
    for movement in plan.movements:
        if movement.event_id is not None:
            by_event[movement.event_id] += 1
    result.movements_by_event = dict(by_event)
    for kind, subject in plan.cleared:
        await clear_alert(conn, kind, subject, reason="a later event ended it", now=now)
    result.alerts = await open_alerts(conn, [*plan.alerts, *overfilled], site, now)
    return result


@dataclass(frozen=True, slots=True)
class PlannedEvents:
    """Events planned by the rules before their transaction began (``plan_ahead``).

    The plan was made from what the store held in a read before the transaction: the event
    ids seen then, and the units, items and open orders the events name. It stands only if,
    inside the transaction, the claim of the ids gives exactly ``fresh_ids`` and nothing
    that committed since that read changed one of ``epcs`` or created one of the plan's new
    items (the caller's ``still_valid``); otherwise ``apply_planned`` plans again.
    """

    events: list[Event]
    """The events as given (repeats included)."""
    unique: dict[str, Event]
    """The first event of each id, in order."""
    fresh_ids: frozenset[str]
    """The ids not seen in the read: the plan's events."""
    inputs: _Inputs
    plan: Plan

    @property
    def epcs(self) -> frozenset[str]:
        """The units whose state the plan read (whether they existed or not)."""
        return frozenset(self.inputs.state.units) | frozenset(
            event.epc for event in self.unique.values() if event.epc is not None
        )

    @property
    def new_items(self) -> frozenset[str]:
        """``ItemKey.ref`` of the items the plan creates."""
        return frozenset(self.plan.new_items)


async def plan_ahead(
    conn: AsyncConnection,
    events: Sequence[Event],
    read_points: Mapping[str, ReadPointSettings],
    policy: Policy = DEFAULT_POLICY,
) -> PlannedEvents | None:
    """Plan ``events`` from a read outside their transaction (``conn`` only reads).

    Returns None when the plan has to be made inside the transaction: the events hold
    cycle counts (they compare with the ledger at the count's time) or pallets (their
    contents are read, or the events held, in the transaction: ``server.ingest.pallet_contents``),
    or open orders name their items (ingest counts against those under a lock,
    ``server.ingest.order_book``).
    """
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    if counts_of(unique.values()):
        return None
    seen = await seen_before(conn, list(unique))
    fresh = [event for event_id, event in unique.items() if event_id not in seen]
    expansion = await expand_pallets(conn, fresh, read_points)
    if expansion.pallets or expansion.unknown:
        return None
    item_ids, state = await _rule_inputs(conn, fresh, policy)
    if state.orders:
        return None
    plan = rules.plan(fresh, state, read_points, policy)
    return PlannedEvents(
        list(events),
        unique,
        frozenset(event.event_id for event in fresh),
        _Inputs(item_ids, state, expansion),
        plan,
    )


async def apply_planned(
    conn: AsyncConnection,
    planned: PlannedEvents,
    read_points: Mapping[str, ReadPointSettings],
    *,
    still_valid: Callable[[PlannedEvents], bool],
    known_locations: set[str],
    actor: str,
    site: str | None,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    actors: Mapping[str, str] | None = None,
) -> tuple[Applied, bool]:
    """``apply_events`` for events planned ahead: the claim first, as always, then the
    plan made ahead if it still holds, else a plan made now.

    Args:
        still_valid: called inside the transaction once the ids are claimed: False when
            something committed since the plan's read may have changed what it read.
        (the rest as ``apply_events``)

    Returns:
        What was applied, and whether the plan made ahead was the one written.
    """
    fresh_ids = await claim_events(conn, list(planned.unique), now)
    kept = fresh_ids == planned.fresh_ids and still_valid(planned)
    fresh = [event for event_id, event in planned.unique.items() if event_id in fresh_ids]
    arguments: dict[str, Any] = {
        "known_locations": known_locations,
        "actor": actor,
        "site": site,
        "now": now,
        "policy": policy,
        "actors": actors,
    }
    if not kept:
        result = await apply_fresh(conn, fresh, read_points, **arguments)
    elif fresh:
        result = await _apply_plan(
            conn, fresh, planned.plan, planned.inputs, read_points, **arguments
        )
    else:
        result = Applied()
    result.fresh_ids = fresh_ids
    result.duplicates = len(planned.events) - len(fresh)
    return result, kept


async def write_plan(
    conn: AsyncConnection,
    plan: Plan,
    item_ids: dict[str, int],
    *,
    known_locations: set[str],
    actor: str,
    now: datetime,
) -> Applied:
    """Write a plan made outside ingest (API stock operations) the way ingest writes its own.

    Ledger rows, balances and unit states go through the same statements as a batch's, so
    ``check-ledger`` and the "newest event wins" rule for units hold for both.

    Args:
        conn: a connection in a transaction the caller commits.
        plan: movements and unit states; ``plan.new_items`` must be empty.
        item_ids: database id of every item the plan names, by ``ItemKey.ref``.
        known_locations: location ids known to exist (read only here).
        actor: recorded on every ledger row (the API key's name).
        now: the recording time.
    """
    result = Applied()
    await _write_plan(conn, plan, item_ids, known_locations, actor, now, result)
    result.movements = len(plan.movements)
    return result
