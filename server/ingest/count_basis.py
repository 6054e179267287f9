"""What the store holds at a counted location: loaded for the cycle counts of a batch.

``server.rules.counts`` compares a count with the books as of the count's event time. Before
a batch with counts is planned, this module loads, per count:

- every unit whose current location is the counted one, and the units its serial lines
  may name (``sgtin_candidates``), into the planner's unit states;
- the quantity without EPC the ledger held there as of the count's time, per item (one
  grouped query over the location's ledger rows up to that time, served by the
  ``(to_location, event_time)`` and ``(from_location, event_time)`` indexes).

A batch without counts costs nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.rules.counts import sgtin_candidates
from server.rules.model import CountBasis, ItemKey, UnitState
from server.rules.steps import location_problem, step_rule_for
from server.store.dialect import in_chunks
from server.store.schema.core import items, ledger, units
from wire.models import Event


@dataclass(slots=True)
class CountLoad:
    """What the counts of a batch are compared with."""

    units: dict[str, UnitState] = field(default_factory=dict)
    bases: dict[str, CountBasis] = field(default_factory=dict)
    items: dict[str, ItemKey] = field(default_factory=dict)
    """Keys of the items of those units and quantities, by ``ItemKey.ref``."""


def _key(gtin: str | None, sku: str, name: str) -> ItemKey:
    return ItemKey(gtin=gtin, sku=sku, name=name)


async def units_where(
    conn: AsyncConnection,
    condition: sa.ColumnElement[bool],
    params: Mapping[str, object] | None = None,
    found: dict[str, ItemKey] | None = None,
) -> dict[str, UnitState]:
    """Unit states matching ``condition`` (with its bound ``params``); adds their items'
    keys to ``found`` if given."""
    rows = await conn.execute(
        sa.select(
            units.c.epc,
            items.c.gtin,
            items.c.sku,
            items.c.name,
            units.c.location_id,
            units.c.status,
            units.c.last_event_time,
            units.c.last_event_id,
            units.c.site,
        )
        .join(items, items.c.id == units.c.item_id)
        .where(condition),
        dict(params or {}),
    )
    result: dict[str, UnitState] = {}
    # Unpacked, not read by name: a Row's attribute costs about a microsecond, and ingest
    # reads every unit its batch names.
    for epc, gtin, sku, name, location, status, event_time, event_id, site in rows:
        key = _key(gtin, sku, name)
        if found is not None:
            found.setdefault(key.ref, key)
        result[epc] = UnitState(
            epc=epc,
            item=key.ref,
            location=location,
            status=status,
            last_event_time=event_time,
            last_event_id=event_id,
            site=site,
        )
    return result


async def _loose(
    conn: AsyncConnection, location: str, at: datetime
) -> list[tuple[str | None, str, str, int]]:
    """Per item: quantity without EPC at ``location`` as of ``at`` (ledger rows up to then)."""
    moves = sa.union_all(
        sa.select(ledger.c.item_id, ledger.c.quantity.label("quantity")).where(
            ledger.c.to_location == location, ledger.c.epc.is_(None), ledger.c.event_time <= at
        ),
        sa.select(ledger.c.item_id, (-ledger.c.quantity).label("quantity")).where(
            ledger.c.from_location == location,
            ledger.c.epc.is_(None),
            ledger.c.event_time <= at,
        ),
    ).subquery("moves")
    total = sa.func.sum(moves.c.quantity)
    rows = await conn.execute(
        sa.select(items.c.gtin, items.c.sku, items.c.name, total.label("quantity"))
        .select_from(moves.join(items, items.c.id == moves.c.item_id))
        .group_by(items.c.id, items.c.gtin, items.c.sku, items.c.name)
        .having(total != 0)
    )
    return [(row.gtin, row.sku, row.name, int(row.quantity)) for row in rows]


def counts_of(events: Iterable[Event]) -> list[Event]:
    """The cycle counts among ``events`` that the count rule will take."""
    return [
        event
        for event in events
        if event.quantities is not None
        and event.biz_location is not None
        and step_rule_for(event) is not None
        and location_problem(event) is None
    ]


async def load_counts(conn: AsyncConnection, events: Iterable[Event]) -> CountLoad:
    """What the cycle counts among ``events`` are compared with (empty without counts)."""
    counts = counts_of(events)
    load = CountLoad()
    if not counts:
        return load
    places = sorted({event.biz_location for event in counts if event.biz_location})
    load.units.update(await units_where(conn, units.c.location_id.in_(places), found=load.items))
    candidates = sorted(
        {
            epc
            for event in counts
            for line in event.quantities or ()
            if line.serial is not None
            for epc in sgtin_candidates(line.gtin, line.serial)
        }
    )
    for chunk in in_chunks(candidates):
        load.units.update(await units_where(conn, units.c.epc.in_(chunk), found=load.items))
    for event in counts:
        assert event.biz_location is not None
        loose: dict[str, int] = {}
        for gtin, sku, name, quantity in await _loose(conn, event.biz_location, event.event_time):
            key = _key(gtin, sku, name)
            load.items.setdefault(key.ref, key)
            loose[key.ref] = int(quantity)
        load.bases[event.event_id] = CountBasis(
            location=event.biz_location,
            loose=loose,
            items={ref: load.items[ref] for ref in loose},
        )
    return load
