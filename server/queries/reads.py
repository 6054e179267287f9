"""The read side: bounded queries the API serves. Callers validate and bound the inputs.

A location filter means the location and its subtree: ``wh1`` matches ``wh1`` and anything
under ``wh1.``. Location ids are compared bytewise (see ``server.store.schema.core``), so the
subtree is the half-open range ``["wh1.", "wh1/")`` (``/`` is the character after ``.``) and an
index on the column serves it on both databases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import alert_view
from server.queries.views import (
    AlertView,
    DeadLetterView,
    GatewayView,
    ItemView,
    MovementView,
    ReaderSummary,
    StockRow,
    UnitView,
)
from server.store.schema.core import (
    alerts,
    balances,
    dead_letters,
    gateway_configs,
    gateways,
    items,
    ledger,
    locations,
    units,
)
from server.store.schema.orders import order_positions
from server.store.sites import in_sites, site_of

AlertFilter = Literal["open", "unacknowledged", "acknowledged", "closed", "all"]


def in_subtree(column: sa.ColumnElement[str], location: str) -> sa.ColumnElement[bool]:
    """``column`` is ``location`` or lies under it."""
    return sa.or_(
        column == location,
        sa.and_(column >= f"{location}.", column < f"{location}/"),
    )


@dataclass(frozen=True, slots=True)
class StockQuery:
    gtin: str | None = None
    sku: str | None = None
    location: str | None = None
    include_zero: bool = False
    limit: int = 100
    offset: int = 0
    sites: frozenset[str] = frozenset()
    """Only locations of these sites (empty: every site)."""


async def stock(conn: AsyncConnection, query: StockQuery) -> tuple[list[StockRow], int]:
    """On hand per item and location, and how many rows match in all.

    Rows come in SKU, then location order; a location filter is planned as for
    ``movements`` (small subtrees through the location index, large ones not).
    """
    conditions: list[sa.ColumnElement[bool]] = []
    if query.gtin is not None:
        conditions.append(items.c.gtin == query.gtin)
    if query.sku is not None:
        conditions.append(items.c.sku == query.sku)
    figures = {
        figure: sa.func.coalesce(order_positions.c[figure], 0)
        for figure in ("on_order", "allocated", "in_transit")
    }
    page_conditions = list(conditions)
    if not query.include_zero:
        # A row with nothing on hand still matters while open orders expect or hold goods.
        page_conditions.append(sa.or_(balances.c.on_hand != 0, *(f != 0 for f in figures.values())))
    # An item filter reads that item's balances by key; a location only filters them.
    keyed = query.gtin is not None or query.sku is not None
    large = (
        query.location is not None and not keyed and await _subtree(conn, query.location) is None
    )
    # The page and the count want different plans for a large subtree: the page walks
    # items in SKU order and stops after it (the location index would have every row of
    # the subtree sorted); the count reads the subtree's range of that index.
    unindexed = _unindexed(balances.c.location_id)
    page_conditions += _places(query, unindexed if large else balances.c.location_id, unindexed)
    positions = sa.and_(
        order_positions.c.item_id == balances.c.item_id,
        order_positions.c.location_id == balances.c.location_id,
    )
    # Items first: the page is read in SKU order (SQLite keeps this join order).
    joined = balances.join(items, items.c.id == balances.c.item_id).outerjoin(
        order_positions, positions
    )
    rows = await conn.execute(
        sa.select(
            items.c.sku,
            items.c.gtin,
            items.c.name,
            items.c.reviewed,
            balances.c.location_id.label("location"),
            balances.c.on_hand,
            *(value.label(figure) for figure, value in figures.items()),
        )
        .select_from(joined)
        .where(*page_conditions)
        .order_by(items.c.sku, balances.c.location_id)
        .limit(query.limit)
        .offset(query.offset)
    )
    # Every balance has its item (a foreign key), so only an item filter needs the join.
    held = balances.join(items, items.c.id == balances.c.item_id) if keyed else balances
    count_conditions = [
        *conditions,
        *_places(query, balances.c.location_id, balances.c.location_id),
    ]
    if query.include_zero:
        total = await _count(conn, held, count_conditions)
    else:
        # Counted in two parts that add up to the page's condition: the rows with goods on
        # hand (no join), and those with none that an open order still names, found from
        # the order positions (few) and looked up in balances by key. One count joining
        # the order positions to every balance row cost several times as much over a site.
        total = await _count(conn, held, [*count_conditions, balances.c.on_hand != 0])
        ordered: sa.FromClause = order_positions
        if keyed:
            ordered = order_positions.join(items, items.c.id == order_positions.c.item_id)
        nothing_held = (
            sa.select(balances.c.item_id).where(positions, balances.c.on_hand == 0).exists()
        )
        total += await _count(
            conn,
            ordered,
            [
                *conditions,
                *_places(query, order_positions.c.location_id, order_positions.c.location_id),
                sa.or_(*(order_positions.c[figure] != 0 for figure in figures)),
                nothing_held,
            ],
        )
    return [StockRow.model_validate(row._mapping) for row in rows], total


def _places(
    query: StockQuery, subtree_column: sa.ColumnElement[str], sites_column: sa.ColumnElement[str]
) -> list[sa.ColumnElement[bool]]:
    """The location and site conditions of ``query``, each on the column given for it."""
    found: list[sa.ColumnElement[bool]] = []
    if query.location is not None:
        found.append(in_subtree(subtree_column, query.location))
    if query.sites:
        found.append(in_sites(sites_column, query.sites))
    return found


async def _count(
    conn: AsyncConnection, selectable: sa.FromClause, conditions: Sequence[sa.ColumnElement[bool]]
) -> int:
    total = await conn.scalar(sa.select(sa.func.count()).select_from(selectable).where(*conditions))
    return int(total or 0)


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


SUBTREE_BRANCH_LOCATIONS = 32
"""A location filter whose subtree has at most this many locations is answered by one
index scan per location and side (see ``movements``)."""


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
        subtree = await _subtree(conn, query.location)
    if query.location is not None and subtree is None:
        conditions.append(
            sa.or_(
                in_subtree(_unindexed(ledger.c.from_location), query.location),
                in_subtree(_unindexed(ledger.c.to_location), query.location),
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
                in_sites(_unindexed(ledger.c.from_location), query.sites),
                in_sites(_unindexed(ledger.c.to_location), query.sites),
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


async def _subtree(conn: AsyncConnection, location: str) -> list[str] | None:
    """The locations of ``location``'s subtree, or None when there are too many to branch."""
    rows = await conn.execute(
        sa.select(locations.c.id)
        .where(in_subtree(locations.c.id, location))
        .order_by(locations.c.id)
        .limit(SUBTREE_BRANCH_LOCATIONS + 1)
    )
    found = list(rows.scalars())
    return found if len(found) <= SUBTREE_BRANCH_LOCATIONS else None


def _unindexed(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``column`` as an expression no index serves (same value, same bytewise order)."""
    return column.op("||")(sa.literal("", sa.String()))


async def unit(
    conn: AsyncConnection, epc: str, history_limit: int, sites: frozenset[str] = frozenset()
) -> UnitView | None:
    """A unit with its item and its newest ``history_limit`` ledger rows.

    With ``sites``, only the rows touching those sites, and None when the unit is not at one
    of them and has no such row.
    """
    row = (
        await conn.execute(
            sa.select(
                units.c.epc,
                units.c.status,
                units.c.location_id,
                units.c.last_event_time,
                units.c.last_event_id,
                items.c.id.label("item_id"),
                items.c.sku,
                items.c.gtin,
                items.c.name,
                items.c.reviewed,
            )
            .join(items, items.c.id == units.c.item_id)
            .where(units.c.epc == epc)
        )
    ).first()
    if row is None:
        return None
    history, _ = await movements(conn, MovementQuery(epc=epc, limit=history_limit, sites=sites))
    if sites and not history and (row.location_id is None or site_of(row.location_id) not in sites):
        return None
    return UnitView(
        epc=row.epc,
        status=row.status,
        location=row.location_id,
        item=ItemView(
            id=row.item_id, sku=row.sku, gtin=row.gtin, name=row.name, reviewed=row.reviewed
        ),
        last_event_time=row.last_event_time,
        last_event_id=row.last_event_id,
        history=history,
    )


def _alert_condition(state: AlertFilter) -> Sequence[sa.ColumnElement[bool]]:
    table: dict[AlertFilter, Sequence[sa.ColumnElement[bool]]] = {
        "open": (alerts.c.closed_at.is_(None),),
        "unacknowledged": (alerts.c.closed_at.is_(None), alerts.c.acknowledged_at.is_(None)),
        "acknowledged": (alerts.c.closed_at.is_(None), alerts.c.acknowledged_at.is_not(None)),
        "closed": (alerts.c.closed_at.is_not(None),),
        "all": (),
    }
    return table[state]


async def list_alerts(
    conn: AsyncConnection, state: AlertFilter, kind: str | None, limit: int
) -> list[AlertView]:
    """Alerts newest first."""
    conditions = list(_alert_condition(state))
    if kind is not None:
        conditions.append(alerts.c.kind == kind)
    rows = await conn.execute(
        sa.select(alerts)
        .where(*conditions)
        .order_by(alerts.c.opened_at.desc(), alerts.c.id.desc())
        .limit(limit)
    )
    return [alert_view(row) for row in rows]


async def list_gateways(conn: AsyncConnection, limit: int) -> list[GatewayView]:
    """Gateways by id, with the fleet fields of their last online status."""
    newest = (
        sa.select(gateway_configs.c.gateway, sa.func.max(gateway_configs.c.version).label("latest"))
        .group_by(gateway_configs.c.gateway)
        .subquery()
    )
    rows = await conn.execute(
        sa.select(gateways, newest.c.latest)
        .select_from(gateways.outerjoin(newest, newest.c.gateway == gateways.c.id))
        .order_by(gateways.c.id)
        .limit(limit)
    )
    return [fleet_view(row._mapping) for row in rows]


def fleet_view(row: Mapping[Any, Any]) -> GatewayView:
    """A gateway row as the fleet view shows it (see ``GatewayView``)."""
    status: dict[str, Any] = row["status"]
    online: dict[str, Any] | None = row["online_status"]
    details = status if status.get("state") == "online" else online
    fields: dict[str, Any] = {}
    if details is not None:
        fields = {
            "details_at": details.get("at"),
            "config_rejected": details.get("config_rejected"),
            "uptime_s": details.get("uptime_s"),
            "outbox_depth": details.get("buffer_depth"),
            "oldest_event_age_s": details.get("oldest_unacked_age_s"),
            "disk_free_bytes": details.get("disk_free_bytes"),
            "cpu_temp_c": details.get("cpu_temp_c"),
            "throttled": details.get("throttled"),
            "throttled_since_boot": details.get("throttled_since_boot"),
            "readers": [
                ReaderSummary.model_validate(reader) for reader in details.get("readers", [])
            ],
        }
    # What runs: the last online status says it (a last will is built when the gateway
    # connects, so its config version may be older than one applied since); a gateway
    # never seen online has only its offline status to say it.
    for key in ("software_version", "config_version"):
        value = (details or {}).get(key)
        fields[key] = value if value is not None else status.get(key)
    return GatewayView(
        id=row["id"],
        site=row["site"],
        state=row["state"],
        status_at=row["status_at"],
        last_seen=row["last_seen"],
        status=status,
        config_latest=row["latest"],
        **fields,
    )


async def list_dead_letters(
    conn: AsyncConnection, before_id: int | None, limit: int
) -> list[DeadLetterView]:
    """Dead letters newest first, optionally only those with an id below ``before_id``."""
    conditions: list[sa.ColumnElement[bool]] = []
    if before_id is not None:
        conditions.append(dead_letters.c.id < before_id)
    rows = await conn.execute(
        sa.select(dead_letters).where(*conditions).order_by(dead_letters.c.id.desc()).limit(limit)
    )
    return [DeadLetterView.model_validate(row._mapping) for row in rows]
