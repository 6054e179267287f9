"""Pallet events in ingest: expanded into their contents, or held (``server.rules.pallets``).

``expand_pallets`` runs in the applying transaction before the batch is planned: it reads
the contents of the pallets the batch's events name and returns the events to plan. A
batch without an SSCC event costs one pass over its events and no statement.
``hold_unknown`` keeps the events of pallets nobody has recorded contents for, with their
``unknown_pallet`` alerts; ``server.commands.pallets`` applies them once the contents come.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.settings import ReadPointSettings
from server.rules.model import AlertSpec
from server.rules.pallets import (
    SSCC_URN_PREFIX,
    Contents,
    QuantityLine,
    pallet_events,
    sscc_of,
    unknown_pallet,
)
from server.rules.policy import event_site
from server.rules.stock import rule_for
from server.store.dialect import one_of, upsert
from server.store.schema.pallets import aggregations, pallet_holds
from wire.models import Event


@dataclass(slots=True)
class Expansion:
    """A batch's events with its pallets' events replaced by their contents'."""

    events: list[Event]
    """What to plan."""
    pallets: dict[str, Event] = field(default_factory=dict)
    """The pallet events expanded, by event id (what a refusal names)."""
    unknown: list[tuple[Event, str]] = field(default_factory=list)
    """Pallet events with a stock effect whose contents are not known, with the SSCC."""


async def load_contents(conn: AsyncConnection, ssccs: Sequence[str]) -> dict[str, Contents]:
    """What each of ``ssccs`` holds (a pallet with no rows is absent)."""
    if not ssccs:
        return {}
    condition, params = one_of(conn, aggregations.c.parent, "ssccs", sorted(set(ssccs)))
    rows = await conn.execute(
        sa.select(
            aggregations.c.parent,
            aggregations.c.child_epc,
            aggregations.c.gtin,
            aggregations.c.lot,
            aggregations.c.qty,
        )
        .where(condition)
        .order_by(aggregations.c.parent, aggregations.c.id),
        params,
    )
    epcs: dict[str, list[str]] = {}
    loose: dict[str, list[QuantityLine]] = {}
    for parent, child, gtin, lot, qty in rows:
        if child is not None:
            epcs.setdefault(parent, []).append(child)
        else:
            loose.setdefault(parent, []).append(QuantityLine(gtin, lot, int(qty)))
    return {
        sscc: Contents(sscc, tuple(epcs.get(sscc, ())), tuple(loose.get(sscc, ())))
        for sscc in set(epcs) | set(loose)
    }


async def expand_pallets(
    conn: AsyncConnection, events: Sequence[Event], read_points: Mapping[str, ReadPointSettings]
) -> Expansion:
    """``events`` with each pallet event that has a stock effect replaced by its contents."""
    wanted: dict[str, str] = {}
    prefix = SSCC_URN_PREFIX
    for event in events:
        # Inline, not is_pallet_epc: this runs for every event ingest applies.
        epc = event.epc
        if epc is not None and epc.startswith(prefix):
            sscc = sscc_of(epc)
            if sscc is not None and rule_for(event, read_points[event.read_point]):
                wanted[event.event_id] = sscc
    if not wanted:
        return Expansion(list(events))
    known = await load_contents(conn, list(wanted.values()))
    result = Expansion([])
    for event in events:
        sscc = wanted.get(event.event_id)
        if sscc is None:
            result.events.append(event)
            continue
        contents = known.get(sscc)
        if contents is None or contents.empty:
            result.unknown.append((event, sscc))
            continue
        result.pallets[event.event_id] = event
        result.events.extend(pallet_events(event, contents))
    return result


async def hold_unknown(
    conn: AsyncConnection,
    unknown: Sequence[tuple[Event, str]],
    read_points: Mapping[str, ReadPointSettings],
    *,
    actor: str,
    actors: Mapping[str, str] | None,
    now: datetime,
) -> list[AlertSpec]:
    """Keep the events of unknown pallets; their ``unknown_pallet`` alerts."""
    if not unknown:
        return []
    rows = []
    alerts = []
    for event, sscc in unknown:
        site = event_site(read_points[event.read_point])
        rows.append(
            {
                "event_id": event.event_id,
                "sscc": sscc,
                "site": site,
                "gateway": actor if actors is None else actors.get(event.event_id, actor),
                "event": event.model_dump(mode="json", exclude_none=True),
                "held_at": now,
            }
        )
        alerts.append(unknown_pallet(event, sscc, site))
    await conn.execute(upsert(conn, pallet_holds).on_conflict_do_nothing(), rows)
    return alerts


__all__ = ["Expansion", "expand_pallets", "hold_unknown", "load_contents"]
