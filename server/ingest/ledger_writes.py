"""A plan's rows, inside the caller's transaction: the ledger and what is written with it.

Items and locations the plan names are created if missing; then cycle count lines, ledger
rows, balance deltas, unresolved passes and unit states, each with one multi-row
statement per table, so a batch costs a handful of round trips however many events it
holds. Ingest (``server.ingest.apply``) and the API's stock operations (``write_plan``)
write through the same statements.

Balances are increments (``on_hand = on_hand + excluded.on_hand``), so concurrent batches
commute. A unit's row is only overwritten by a newer event (``ON CONFLICT DO UPDATE ...
WHERE`` on event time, then event id), which keeps "last writer by event time" true even
when two instances race on one unit (docs/architecture.md §4).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import StoreError
from server.ingest.references import hold
from server.ingest.unresolved_rows import insert_unresolved
from server.queries.views import AlertView
from server.rules.model import ItemKey, Plan, UnresolvedPass
from server.store.dialect import bytewise, execute_rows, from_excluded, one_of, upsert
from server.store.schema.core import balances, items, ledger, locations, units
from server.store.schema.counts import count_results
from server.store.sites import site_of
from wire.models import Event

LEDGER_KEYS = (
    "event_id",
    "event_time",
    "recorded_at",
    "item_id",
    "epc",
    "from_location",
    "to_location",
    "quantity",
    "kind",
    "reason",
    "actor",
    "read_point",
    "note",
    "reverses",
    "confidence",
)
"""The columns of a ledger row as ``write_rows`` gives them."""
UNIT_KEYS = ("epc", "item_id", "location_id", "status", "last_event_time", "last_event_id", "site")
"""The columns of a unit state as ``write_rows`` gives them."""
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


async def load_items(conn: AsyncConnection, keys: Sequence[ItemKey]) -> dict[str, int]:
    """The database id of each of ``keys``' items that exists, by ``ItemKey.ref``."""
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


async def _ensure_items(
    conn: AsyncConnection,
    new_items: Mapping[str, ItemKey],
    item_ids: dict[str, int],
    now: datetime,
) -> None:
    missing = [key for ref, key in new_items.items() if ref not in item_ids]
    if not missing:
        return
    await _insert_items(conn, missing, [key.sku for key in missing], item_ids, now)
    # A GTIN whose placeholder SKU is already some other item's real SKU: use a prefix.
    clashing = [key for key in missing if key.ref not in item_ids and key.gtin is not None]
    if clashing:
        skus = [f"gtin:{key.gtin}" for key in clashing]
        await _insert_items(conn, clashing, skus, item_ids, now)
    still = [key.ref for key in missing if key.ref not in item_ids]
    if still:
        raise StoreError(f"could not create items {still[:5]}: SKU already taken")


async def _insert_items(
    conn: AsyncConnection,
    keys: Sequence[ItemKey],
    skus: Sequence[str],
    item_ids: dict[str, int],
    now: datetime,
) -> None:
    """Insert ``keys`` as unreviewed items with ``skus``, then read back the ids they got."""
    # Another instance may create the same item concurrently: DO NOTHING, then read back.
    await conn.execute(
        upsert(conn, items).on_conflict_do_nothing(),
        [
            {"sku": sku, "gtin": key.gtin, "name": key.name, "reviewed": False, "created_at": now}
            for key, sku in zip(keys, skus, strict=True)
        ],
    )
    item_ids.update(await load_items(conn, keys))


async def ensure_locations(
    conn: AsyncConnection, wanted: Iterable[str], known: Container[str], now: datetime
) -> set[str]:
    """Create ``wanted`` and their ancestors unless ``known`` or there already; returns those
    not in ``known`` (inserted now, or by a concurrent transaction)."""
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


BalanceDeltas = dict[tuple[int, str], int]
"""What movements add to balances, by (item id, location)."""


async def write_balance_deltas(conn: AsyncConnection, deltas: BalanceDeltas) -> None:
    """Add ``deltas`` to the balances, in key order (so concurrent PostgreSQL transactions
    lock balance rows in one order)."""
    await execute_rows(
        conn,
        "balance deltas",
        _balance_upsert,
        ("item_id", "location_id", "on_hand"),
        [(item_id, location, delta) for (item_id, location), delta in sorted(deltas.items())],
    )


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


async def write_rows(
    conn: AsyncConnection,
    plan: Plan,
    item_ids: dict[str, int],
    known_locations: set[str],
    actor: str,
    now: datetime,
    result: Applied,
    actors: Mapping[str, str] | None = None,
    pending: BalanceDeltas | None = None,
) -> None:
    """Write ``plan``'s rows; ``result`` gets the locations created and unresolved passes.

    Args:
        conn: a connection in a transaction the caller commits.
        plan: the rules' plan.
        item_ids: database id of every item the plan names that exists, by ``ItemKey.ref``
            (the plan's new items are created and added).
        known_locations: location ids known to exist (read only here).
        actor: recorded on every ledger row.
        now: the recording time.
        result: what the caller reports.
        actors: the actor of each event by id, where it is not ``actor``.
        pending: where the balance deltas go instead of the balances; the caller writes
            them later (``write_balance_deltas``) and reads balances with them added
            (ingest writes them last in its transaction, so it holds the balance rows'
            locks for the commit only).
    """
    await _ensure_items(conn, plan.new_items, item_ids, now)
    named = plan.locations()
    result.new_locations = await ensure_locations(conn, named, known_locations, now)
    # On PostgreSQL what the rows name is locked here instead of by foreign keys.
    await hold(
        conn,
        itertools.chain(
            (item_ids[movement.item.ref] for movement in plan.movements),
            (item_ids[unit.item] for unit in plan.units.values()),
        ),
        named,
    )

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
        await execute_rows(
            conn,
            "ledger rows",
            lambda _: ledger.insert(),
            LEDGER_KEYS,
            [
                (
                    movement.event_id,
                    movement.event_time,
                    now,
                    item_ids[movement.item.ref],
                    movement.epc,
                    movement.from_location,
                    movement.to_location,
                    movement.quantity,
                    movement.kind,
                    movement.reason,
                    actor
                    if actors is None or movement.event_id is None
                    else actors.get(movement.event_id, actor),
                    movement.read_point,
                    movement.note,
                    movement.reverses,
                    movement.confidence,
                )
                for movement in plan.movements
            ],
            copy=True,
        )
        moved: BalanceDeltas = {} if pending is None else pending
        for movement in plan.movements:
            item_id = item_ids[movement.item.ref]
            for location, sign in ((movement.from_location, -1), (movement.to_location, 1)):
                if location is not None:
                    key = (item_id, location)
                    moved[key] = moved.get(key, 0) + sign * movement.quantity
        if pending is None:
            await write_balance_deltas(conn, moved)

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
        await execute_rows(
            conn,
            "unit states",
            _unit_upsert,
            UNIT_KEYS,
            [
                (
                    unit.epc,
                    item_ids[unit.item],
                    unit.location,
                    unit.status,
                    unit.last_event_time,
                    unit.last_event_id,
                    # A state made without a site (API operations) takes its location's.
                    unit.site or (site_of(unit.location) if unit.location else None),
                )
                for unit in sorted(plan.units.values(), key=lambda u: u.epc)
            ],
            copy=True,
        )


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
    await write_rows(conn, plan, item_ids, known_locations, actor, now, result)
    result.movements = len(plan.movements)
    return result
