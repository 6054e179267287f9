"""Movements: ledger rows newest first, filtered, a page at a time (keyset).

Callers validate and bound the inputs; a location filter is the location and its subtree
(``server.queries.subtree``), as the source or the destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.queries.subtree import in_subtree, subtree_of, unindexed
from server.queries.views import MovementView
from server.store.schema.core import items, ledger
from server.store.sites import in_sites


@dataclass(frozen=True, slots=True)
class MovementQuery:
    epc: str | None = None
    gtin: str | None = None
    sku: str | None = None
    location: str | None = None
    read_point: str | None = None
    kind: str | None = None
    actor: str | None = None
    """The gateway or API key name that recorded the row."""
    since: datetime | None = None
    """Inclusive lower bound of event time."""
    until: datetime | None = None
    """Exclusive upper bound of event time."""
    after: tuple[datetime, int] | None = None
    """Keyset position: only rows strictly older than (event_time, id)."""
    limit: int = 100
    sites: frozenset[str] = frozenset()
    """Only rows from or to a location of these sites (empty: every site)."""


_MOVEMENT_COLUMNS = (
    ledger.c.id,
    ledger.c.event_id,
    ledger.c.event_time,
    ledger.c.recorded_at,
    ledger.c.kind,
    items.c.sku,
    items.c.gtin,
    ledger.c.epc,
    ledger.c.from_location,
    ledger.c.to_location,
    ledger.c.quantity,
    ledger.c.reason,
    ledger.c.actor,
    ledger.c.read_point,
    ledger.c.note,
    ledger.c.reverses,
    ledger.c.confidence,
)


async def movements(conn: AsyncConnection, query: MovementQuery) -> tuple[list[MovementView], bool]:
    """Ledger rows newest first (event time, then id), and whether more follow.

    A location filter (the location and its subtree, as the source or the destination)
    is planned here rather than left to the database, whose choice over 10 million rows
    was an OR of four index ranges and a sort of every row of the subtree. With an EPC,
    GTIN or SKU filter that index serves and the location only filters; otherwise:

    - A subtree of at most ``SUBTREE_BRANCH_LOCATIONS`` locations (a bin, an aisle): one
      branch per location and side, each an index scan already in time order that stops
      after a page, merged. The cost is bounded by the page size, not the history.
    - A larger one (a site, a zone): the time index is walked newest first and rows are
      kept while they match, which ends after about a page when the subtree holds a fair
      share of the movements, as sites and zones do. The location columns are wrapped so
      that no location index is preferred for it.
    """
    conditions = _movement_conditions(query)
    joined = ledger.join(items, items.c.id == ledger.c.item_id)
    newest_first = (ledger.c.event_time.desc(), ledger.c.id.desc())
    statement = sa.select(*_MOVEMENT_COLUMNS).select_from(joined)
    # A unit's or an item's history is short next to a location's: its own index (in
    # time order) serves it, and the location only filters.
    keyed = (query.epc, query.gtin, query.sku) != (None, None, None)
    subtree = None
    if query.location is not None and not keyed:
        subtree = await subtree_of(conn, query.location)
    if query.location is not None and subtree is None:
        conditions.append(
            sa.or_(
                in_subtree(unindexed(ledger.c.from_location), query.location),
                in_subtree(unindexed(ledger.c.to_location), query.location),
            )
        )
    elif subtree is not None:
        branches = [
            sa.select(ledger.c.event_time, ledger.c.id)
            .where(column == location, *conditions)
            .order_by(*newest_first)
            .limit(query.limit + 1)
            .subquery()
            .select()
            for location in subtree
            for column in (ledger.c.from_location, ledger.c.to_location)
        ]
        if not branches:
            return [], False
        # UNION, not UNION ALL: a move within the subtree is found from both sides. The
        # page is cut from the merged (time, id) pairs, which the location indexes hold,
        # so only its rows are read from the ledger, not every branch's.
        merged = sa.union(*branches)
        page = merged.selected_columns
        ids = (
            merged.order_by(page.event_time.desc(), page.id.desc())
            .limit(query.limit + 1)
            .subquery()
        )
        # Every branch applied the conditions already.
        statement = statement.join(ids, ids.c.id == ledger.c.id)
        conditions = []
    rows = await conn.execute(
        statement.where(*conditions).order_by(*newest_first).limit(query.limit + 1)
    )
    found = [MovementView.model_validate(row._mapping) for row in rows]
    return found[: query.limit], len(found) > query.limit


def _movement_conditions(query: MovementQuery) -> list[sa.ColumnElement[bool]]:
    """Every condition of ``query`` but its location filter."""
    conditions: list[sa.ColumnElement[bool]] = []
    if query.epc is not None:
        conditions.append(ledger.c.epc == query.epc)
    # On the ledger's own columns, so that a location branch reads its index alone.
    if query.gtin is not None:
        conditions.append(ledger.c.item_id == _item_id(items.c.gtin == query.gtin))
    if query.sku is not None:
        conditions.append(ledger.c.item_id == _item_id(items.c.sku == query.sku))
    # Read point, kind and actor have no index of their own: they filter what the time,
    # item or location index walks (a rare one over a wide window reads that window).
    if query.read_point is not None:
        conditions.append(ledger.c.read_point == query.read_point)
    if query.kind is not None:
        conditions.append(ledger.c.kind == query.kind)
    if query.actor is not None:
        conditions.append(ledger.c.actor == query.actor)
    if query.sites:
        # A key's sites are large subtrees: the time index serves them best (see above).
        conditions.append(
            sa.or_(
                in_sites(unindexed(ledger.c.from_location), query.sites),
                in_sites(unindexed(ledger.c.to_location), query.sites),
            )
        )
    if query.since is not None:
        conditions.append(ledger.c.event_time >= query.since)
    if query.until is not None:
        conditions.append(ledger.c.event_time < query.until)
    if query.after is not None:
        at, last_id = query.after
        conditions.append(
            sa.or_(
                ledger.c.event_time < at,
                sa.and_(ledger.c.event_time == at, ledger.c.id < last_id),
            )
        )
    return conditions


def _item_id(condition: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
    """The id of the item ``condition`` names (SKU and GTIN are unique)."""
    return sa.select(items.c.id).where(condition).scalar_subquery()
