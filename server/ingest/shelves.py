"""Continuous counting: shelf watches kept as batches apply, and the sweep that records the
units that never turned up again as ``missing`` (``server.rules.shelves`` says when).

- **Ingest** (``server.ingest.shelf_watches.record_watches``, in the batch's transaction): every
  EPC the batch read removes its watch when read after it departed; every departure the
  plan kept starts (or renews) one. Only batches at a server with a watched shelf pay.
- **Sweep** (``missing_units``, one of ``server.alerts.sweeps``): each watch past its
  ``due_at`` is taken out; if the unit is still in stock at that shelf with nothing newer
  on the books, a ``count_adjustment`` of reason ``shrinkage`` takes it out of stock
  (status ``missing``, at the time it became due) and ``unit_missing`` opens. The
  adjustment's event id (``shelf-missing:<hash of the departure's event id>``) is claimed in
  ``seen_events`` like any event's, so two instances sweeping at once record it once.
- **Report** (``shrinkage_report``): ledger rows of reason ``shrinkage`` by shelf, location
  and item, and how many of those units are still missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import AlertChange, raise_alerts
from server.config.settings import ReadPointSettings
from server.ingest.claims import claim_events
from server.ingest.ledger_writes import ancestors, write_plan
from server.rules.alerts import UNIT_MISSING
from server.rules.model import ItemKey, Movement, Plan, UnitState
from server.rules.policy import site_of
from server.rules.shelves import SHRINKAGE
from server.store.schema.core import items, ledger, units
from server.store.schema.shelves import shelf_watches

MAX_DUE_PER_SWEEP = 1000
"""Watches one sweep turns into missing units at most (the rest wait for the next)."""
SWEEP_ACTOR = "shelf-sweep"
"""The actor of the ledger rows the sweep writes."""
EVENT_PREFIX = "shelf-missing:"


def missing_event_id(departure_event_id: str) -> str:
    """The event id of the shrinkage adjustment a departure leads to (one per departure)."""
    digest = hashlib.sha256(departure_event_id.encode()).hexdigest()[:32]
    return EVENT_PREFIX + digest


async def missing_units(
    conn: AsyncConnection,
    now: datetime,
    read_points: Mapping[str, ReadPointSettings],
) -> list[AlertChange]:
    """Record as missing the units whose watch fell due by ``now`` (see the module docstring).

    A watch whose read point is no longer a watched shelf is dropped without effect.
    """
    rows = (
        await conn.execute(
            sa.select(shelf_watches, items.c.gtin, items.c.sku, items.c.name)
            .join(items, items.c.id == shelf_watches.c.item_id)
            .where(shelf_watches.c.due_at <= now)
            .order_by(shelf_watches.c.due_at, shelf_watches.c.epc)
            .limit(MAX_DUE_PER_SWEEP)
        )
    ).all()
    specs = []
    for row in rows:
        await conn.execute(
            shelf_watches.delete().where(
                shelf_watches.c.epc == row.epc,
                shelf_watches.c.departure_event_id == row.departure_event_id,
            )
        )
        point = read_points.get(row.read_point)
        if point is None or point.missing_after_s is None:
            continue
        event_id = missing_event_id(row.departure_event_id)
        if not await claim_events(conn, [event_id], now):
            continue  # another instance recorded it
        unit = (
            await conn.execute(
                sa.select(
                    units.c.status,
                    units.c.location_id,
                    units.c.last_event_time,
                    units.c.last_event_id,
                ).where(units.c.epc == row.epc)
            )
        ).first()
        if (
            unit is None
            or unit.status != "in_stock"
            or unit.location_id != row.location_id
            or (unit.last_event_time, unit.last_event_id)
            > (row.departed_at, row.departure_event_id)
        ):
            continue  # the books moved it since: not missing
        key = ItemKey(row.gtin, row.sku, row.name)
        movement = Movement(
            event_id=event_id,
            event_time=row.due_at,
            item=key,
            epc=row.epc,
            from_location=row.location_id,
            to_location=None,
            quantity=1,
            kind="count_adjustment",
            read_point=row.read_point,
            reason=SHRINKAGE,
        )
        state = UnitState(
            epc=row.epc,
            item=key.ref,
            location=None,
            status="missing",
            last_event_time=row.due_at,
            last_event_id=event_id,
            site=site_of(row.location_id),
        )
        await write_plan(
            conn,
            Plan(movements=[movement], units={row.epc: state}),
            {key.ref: row.item_id},
            known_locations=set(ancestors(row.location_id)),
            actor=SWEEP_ACTOR,
            now=now,
        )
        specs.append(
            UNIT_MISSING.raise_(
                row.epc,
                {
                    "epc": row.epc,
                    "gtin": row.gtin,
                    "read_point": row.read_point,
                    "location": row.location_id,
                    "departed_at": row.departed_at.isoformat(),
                    "missing_after_s": point.missing_after_s,
                    "event_id": event_id,
                },
                site=site_of(row.location_id),
            )
        )
    return await raise_alerts(conn, specs, None, now)


@dataclass(frozen=True, slots=True)
class ShrinkageFilter:
    """What ``shrinkage_report`` covers: a location subtree, sites, a time range."""

    location: str | None = None
    sites: frozenset[str] = frozenset()
    """Empty: every site."""
    since: datetime | None = None
    until: datetime | None = None


async def shrinkage_report(
    conn: AsyncConnection, where: ShrinkageFilter, *, limit: int
) -> list[dict[str, Any]]:
    """Shrinkage by shelf (read point), location and item: units recorded missing by the
    sweep in the range, and how many of them are missing still (not read again since)."""
    conditions: list[sa.ColumnElement[bool]] = [
        ledger.c.reason == SHRINKAGE,
        ledger.c.kind == "count_adjustment",
    ]
    if where.location is not None:
        conditions.append(
            sa.or_(
                ledger.c.from_location == where.location,
                ledger.c.from_location.startswith(where.location + ".", autoescape=True),
            )
        )
    if where.sites:
        conditions.append(
            sa.or_(
                *(
                    ledger.c.from_location.startswith(site + ".", autoescape=True)
                    for site in sorted(where.sites)
                )
            )
        )
    if where.since is not None:
        conditions.append(ledger.c.event_time >= where.since)
    if where.until is not None:
        conditions.append(ledger.c.event_time < where.until)
    still = sa.exists().where(
        units.c.epc == ledger.c.epc,
        units.c.last_event_id == ledger.c.event_id,
        units.c.status == "missing",
    )
    missing = sa.func.count()
    still_missing = sa.func.sum(sa.case((still, 1), else_=0))
    rows = await conn.execute(
        sa.select(
            ledger.c.read_point,
            ledger.c.from_location,
            items.c.sku,
            items.c.gtin,
            items.c.name,
            missing.label("missing"),
            still_missing.label("still_missing"),
            sa.func.max(ledger.c.event_time).label("last_at"),
        )
        .join(items, items.c.id == ledger.c.item_id)
        .where(*conditions)
        .group_by(
            ledger.c.read_point, ledger.c.from_location, items.c.sku, items.c.gtin, items.c.name
        )
        .order_by(missing.desc(), ledger.c.read_point, ledger.c.from_location, items.c.sku)
        .limit(limit)
    )
    return [
        {
            "read_point": row.read_point,
            "location": row.from_location,
            "sku": row.sku,
            "gtin": row.gtin,
            "name": row.name,
            "missing": int(row.missing),
            "still_missing": int(row.still_missing or 0),
            "last_at": row.last_at,
        }
        for row in rows
    ]


__all__ = [
    "ShrinkageFilter",
    "missing_event_id",
    "missing_units",
    "shrinkage_report",
]
