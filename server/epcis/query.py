"""The ledger read as EPCIS events: the SimpleEventQuery parameters that fit, in pages.

Parameters (GS1 EPCIS 2.0 query names; the API binds them, ``EpcisQuery`` holds them):

- ``GE_eventTime`` / ``LT_eventTime``: event time from (inclusive) / before (exclusive).
- ``EQ_bizStep``: business steps (bare CBV words or CBV URIs), any of them.
- ``MATCH_epc``: EPCs, any of them; a pattern ``urn:epc:idpat:<scheme>:<...>.*`` matches
  every EPC of that class (prefix match on the pure identity).
- ``EQ_bizLocation``: business locations (SGLN URNs from the location master data, or our
  ``urn:stockgate:loc:<id>``), any of them.
- ``nextPageToken`` / ``perPage``: keyset pages in event time order (oldest first).

Rows are read in ``(event_time, id)`` order from the ledger's time index (or its EPC index
when every ``MATCH_epc`` value is an exact EPC). Business step and location depend on the
row's kind and reason (``server.epcis.documents``), so they are checked on the rows read:
a page reads at most ``[epcis] max_scan_rows`` rows and may come back short, with a
``nextPageToken`` to go on from there. Reversals are read with the row they reverse.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.epcis.documents import (
    CBV_STEP,
    LOCATION_URI,
    LedgerEvent,
    location_uri,
    object_event,
    sglns_needed,
    step_of,
)
from server.store.schema.core import items, ledger, locations
from server.store.sites import in_sites

READ_CHUNK = 500
"""Ledger rows read per statement while filling a page."""
EPC_PATTERN_PREFIX = "urn:epc:idpat:"


@dataclass(frozen=True, slots=True)
class EpcisQuery:
    """One page of a SimpleEventQuery over the ledger."""

    since: datetime | None = None
    until: datetime | None = None
    biz_steps: frozenset[str] = frozenset()
    epcs: tuple[str, ...] = ()
    """Exact EPCs and ``urn:epc:idpat:...*`` patterns."""
    biz_locations: tuple[str, ...] = ()
    after: tuple[datetime, int] | None = None
    limit: int = 100
    max_scan: int = 20_000
    sites: frozenset[str] = frozenset()
    """Only rows touching these sites (empty: all)."""
    min_row: int | None = None
    """Only rows with a larger id (subscriptions); then the order is by id."""
    by_id: bool = False
    below_row: int | None = None
    """Only rows with a smaller id (subscriptions stop before rows still settling)."""


@dataclass(slots=True)
class EpcisPage:
    events: list[dict[str, Any]] = field(default_factory=list)
    next_position: tuple[datetime, int] | None = None
    """Where the next page starts (None: nothing more)."""
    last_row: int | None = None
    """The largest row id read (subscriptions move their cursor to it)."""


def bare_step(value: str) -> str:
    """``https://ref.gs1.org/cbv/BizStep-receiving`` (or ``urn:epcglobal:cbv:bizstep:...``)
    -> ``receiving``."""
    if value.startswith(CBV_STEP):
        return value[len(CBV_STEP) :]
    if value.startswith("urn:epcglobal:cbv:bizstep:"):
        return value.rpartition(":")[2]
    return value


def _epc_condition(values: Sequence[str]) -> sa.ColumnElement[bool]:
    exact = [value for value in values if not value.startswith(EPC_PATTERN_PREFIX)]
    conditions: list[sa.ColumnElement[bool]] = []
    if exact:
        conditions.append(ledger.c.epc.in_(exact))
    for pattern in values:
        if pattern.startswith(EPC_PATTERN_PREFIX):
            prefix = "urn:epc:id:" + pattern[len(EPC_PATTERN_PREFIX) :].rstrip("*")
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(ledger.c.epc.like(escaped + "%", escape="\\"))
    return sa.or_(*conditions)


async def _location_ids(conn: AsyncConnection, uris: Sequence[str]) -> set[str]:
    """The location ids a list of ``EQ_bizLocation`` URIs names (SGLN or our URN)."""
    ids = {
        urllib.parse.unquote(uri[len(LOCATION_URI) :])
        for uri in uris
        if uri.startswith(LOCATION_URI)
    }
    sglns = [uri for uri in uris if not uri.startswith(LOCATION_URI)]
    if sglns:
        rows = await conn.execute(sa.select(locations.c.id).where(locations.c.sgln.in_(sglns)))
        ids.update(rows.scalars())
    return ids


async def location_sglns(conn: AsyncConnection, ids: set[str]) -> dict[str, str]:
    """Location id -> SGLN of those of ``ids`` that have one."""
    found: dict[str, str] = {}
    wanted = sorted(ids)
    for start in range(0, len(wanted), READ_CHUNK):
        rows = await conn.execute(
            sa.select(locations.c.id, locations.c.sgln).where(
                locations.c.id.in_(wanted[start : start + READ_CHUNK]),
                locations.c.sgln.is_not(None),
            )
        )
        found.update({row.id: row.sgln for row in rows})
    return found


_COLUMNS = (
    ledger.c.id,
    ledger.c.event_time,
    ledger.c.kind,
    ledger.c.reason,
    ledger.c.epc,
    items.c.gtin,
    items.c.sku,
    ledger.c.quantity,
    ledger.c.from_location,
    ledger.c.to_location,
    ledger.c.read_point,
    ledger.c.reverses,
)


def _row(row: Any) -> LedgerEvent:
    return LedgerEvent(*row)


async def query_events(conn: AsyncConnection, query: EpcisQuery) -> EpcisPage:
    """One page of events (see the module docstring)."""
    conditions: list[sa.ColumnElement[bool]] = []
    if query.since is not None:
        conditions.append(ledger.c.event_time >= query.since)
    if query.until is not None:
        conditions.append(ledger.c.event_time < query.until)
    if query.epcs:
        conditions.append(_epc_condition(query.epcs))
    if query.sites:
        conditions.append(
            sa.or_(
                in_sites(ledger.c.from_location, query.sites),
                in_sites(ledger.c.to_location, query.sites),
            )
        )
    wanted_locations: set[str] | None = None
    if query.biz_locations:
        wanted_locations = await _location_ids(conn, query.biz_locations)
        if not wanted_locations:
            return EpcisPage()
        conditions.append(ledger.c.to_location.in_(sorted(wanted_locations)))
    if query.min_row is not None:
        conditions.append(ledger.c.id > query.min_row)
    if query.below_row is not None:
        conditions.append(ledger.c.id < query.below_row)
    order = (ledger.c.id,) if query.by_id else (ledger.c.event_time, ledger.c.id)
    page = EpcisPage()
    kept: list[LedgerEvent] = []
    position = query.after
    scanned = 0
    exhausted = False
    while len(kept) < query.limit and scanned < query.max_scan:
        statement = (
            sa.select(*_COLUMNS).join(items, items.c.id == ledger.c.item_id).where(*conditions)
        )
        if position is not None:
            if query.by_id:
                statement = statement.where(ledger.c.id > position[1])
            else:
                statement = statement.where(
                    sa.tuple_(ledger.c.event_time, ledger.c.id) > sa.tuple_(*position)
                )
        chunk = min(READ_CHUNK, query.max_scan - scanned)
        rows = [_row(row) for row in await conn.execute(statement.order_by(*order).limit(chunk))]
        scanned += len(rows)
        consumed = 0
        for row in rows:
            consumed += 1
            position = (row.event_time, row.id)
            page.last_row = max(page.last_row or 0, row.id)
            if _wanted(row, query, wanted_locations):
                kept.append(row)
                if len(kept) == query.limit:
                    break
        if len(rows) < chunk and consumed == len(rows):
            exhausted = True
            break
    page.next_position = None if exhausted else position
    originals = await _originals(conn, [row.reverses for row in kept if row.reverses is not None])
    sglns = await location_sglns(conn, sglns_needed([*kept, *originals.values()]))
    page.events = [
        object_event(row, sglns, original=originals.get(row.reverses or -1)) for row in kept
    ]
    return page


def _wanted(row: LedgerEvent, query: EpcisQuery, places: set[str] | None) -> bool:
    rule = step_of(row)
    if query.biz_steps and rule.biz_step not in query.biz_steps:
        return False
    return places is None or (rule.at_destination and row.to_location in places)


async def _originals(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, LedgerEvent]:
    if not ids:
        return {}
    rows = await conn.execute(
        sa.select(*_COLUMNS)
        .join(items, items.c.id == ledger.c.item_id)
        .where(ledger.c.id.in_(sorted(set(ids))))
    )
    return {row.id: _row(row) for row in rows}


def location_filter_uri(location: str, sglns: dict[str, str]) -> str:
    """What ``EQ_bizLocation`` takes for ``location`` (its SGLN, or our URN)."""
    return location_uri(location, sglns)
