"""Unresolved passes: listing them, and resolving them into the stock effect they stand for.

A portal pass the edge could not give a direction (``server.rules.stock.is_undirected_pass``)
is kept by ingest as an open row of ``unresolved_passes`` and raises ``unresolved_passes``
for its read point. An operator then says what happened:

- ``in`` or ``out``: the pass is applied as the edge would have sent it with that
  direction, through the same rules and writes as ingest (``server.ingest.apply.apply_fresh``):
  the read point's rules decide the effect (a receipt into ``inbound_location``, a
  shipment at an ``outbound = "ship"`` door, nothing at an ``outbound = "ignore"`` one),
  open orders count it, and the unit's state follows event time. The ledger row carries
  the pass's own event id and event time (the goods moved then, not when someone looked)
  and the operator's key name as actor. A later event that moved the unit meanwhile still
  decides where the unit is (last writer by event time); the resolution's row is history
  before it, exactly as a late-arriving pass would be.
- ``ignore``: no stock effect (a tag that was carried past the door, a test tag).

Exactly once: the rows are locked (``FOR UPDATE`` on PostgreSQL; SQLite has one writer)
and must still be open; the state change commits with the ledger rows. A second resolve of
the same pass is refused (409) naming the first resolution. The movement is reversed like
any other (``POST /api/v1/reversals`` with its ``movement_id``); the pass stays resolved,
and the reversal says why. When no pass at a read point is open any more its alert clears.

A *group* (``Event.group``: the tags that crossed one read point together, a pallet) is
resolved in one call by naming it; its passes are applied together, in event-time order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.settings import ReadPointSettings
from server.errors import Conflict, NotFound
from server.ingest.apply import apply_fresh
from server.ingest.unresolved_rows import clear_if_done
from server.queries.views import MovementView, View
from server.rules.policy import DEFAULT_POLICY, Policy
from server.store.schema.core import items, ledger
from server.store.schema.passes import MAX_GROUP, PassState, Resolution, unresolved_passes
from wire.models import Event

StateFilter = Literal["open", "resolved", "all"]
MAX_RESOLVE = 1000
"""Most passes one call resolves (a pallet is far fewer; a larger group is named in parts
by ``ids``)."""
MAX_ROW_ID = 2**63 - 1
BIZ_STEPS: Mapping[str, str] = {"in": "receiving", "out": "shipping"}
"""The business step a resolved pass is applied with (the edge's for that direction)."""


class UnresolvedPassView(View):
    """One unresolved pass: what the portal saw, and what became of it."""

    id: int
    event_id: str
    read_point: str
    site: str
    gateway: str
    """The gateway that sent the pass."""
    epc: str
    gtin: str | None
    sku: str
    time: datetime
    """The pass's event time (its last read)."""
    recorded_at: datetime
    group: str | None
    """The id of the tags that crossed the read point together (a pallet), if any."""
    evidence: dict[str, Any]
    """The event's ``reads`` as the edge sent them (side counts, ``reason``, ...)."""
    state: PassState
    resolution: Resolution | None
    resolved_by: str | None
    resolved_at: datetime | None
    movement_id: int | None
    """The ledger row the resolution appended (null: ``ignore``, or no stock effect)."""


class ResolveRequest(BaseModel):
    """What happened at the door: ``in``, ``out``, or ``ignore`` (no stock effect)."""

    model_config = ConfigDict(extra="forbid")

    direction: Resolution


PassId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class BulkResolveRequest(ResolveRequest):
    """Resolve several passes at once: a whole ``group``, or a list of ``ids``.

    ``group`` resolves every open pass of the group (at ``read_point`` when given: a group
    id is unique per gateway, so two gateways' groups may share one). ``ids`` resolves
    exactly those passes, all of which must be open.
    """

    group: Annotated[str, Field(min_length=1, max_length=MAX_GROUP)] | None = None
    read_point: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    ids: Annotated[list[PassId], Field(min_length=1, max_length=MAX_RESOLVE)] | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> BulkResolveRequest:
        if (self.group is None) == (self.ids is None):
            raise ValueError("name the passes by exactly one of group and ids")
        if self.read_point is not None and self.group is None:
            raise ValueError("read_point narrows a group; it goes with group, not ids")
        if self.ids is not None and len(set(self.ids)) != len(self.ids):
            raise ValueError("ids lists a pass twice")
        return self


class ResolveResult(BaseModel):
    """The passes resolved, and the ledger rows their resolution appended."""

    items: list[UnresolvedPassView]
    movements: list[MovementView]


@dataclass(frozen=True, slots=True)
class PassQuery:
    """Filters and position of one page of unresolved passes (newest first)."""

    state: StateFilter = "open"
    read_point: str | None = None
    group: str | None = None
    epc: str | None = None
    site: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, int] | None = None
    """The (event time, id) of the last row of the previous page."""
    limit: int = 100
    sites: frozenset[str] = frozenset()
    """The caller's sites (empty: all)."""


@dataclass(frozen=True, slots=True)
class Resolver:
    """Who resolves (recorded as actor) and the sites the key is for (empty: all)."""

    name: str
    sites: frozenset[str] = frozenset()


def _columns() -> list[sa.ColumnElement[Any]]:
    table = unresolved_passes.c
    return [
        table.id,
        table.event_id,
        table.read_point,
        table.site,
        table.gateway,
        table.epc,
        items.c.gtin,
        items.c.sku,
        table.event_time.label("time"),
        table.recorded_at,
        table.pass_group.label("group"),
        table.evidence,
        table.state,
        table.resolution,
        table.resolved_by,
        table.resolved_at,
        table.movement_id,
    ]


def _select() -> sa.Select[Any]:
    return sa.select(*_columns()).join(items, items.c.id == unresolved_passes.c.item_id)


def _view(row: sa.Row[Any]) -> UnresolvedPassView:
    return UnresolvedPassView.model_validate(row._mapping)


async def list_passes(
    conn: AsyncConnection, query: PassQuery
) -> tuple[list[UnresolvedPassView], bool]:
    """One page of passes, newest first (event time, then id), and whether more follow."""
    table = unresolved_passes.c
    conditions: list[sa.ColumnElement[bool]] = []
    if query.state != "all":
        conditions.append(table.state == query.state)
    conditions += [
        column == value
        for column, value in (
            (table.read_point, query.read_point),
            (table.pass_group, query.group),
            (table.epc, query.epc),
            (table.site, query.site),
        )
        if value is not None
    ]
    if query.sites:
        conditions.append(table.site.in_(sorted(query.sites)))
    if query.since is not None:
        conditions.append(table.event_time >= query.since)
    if query.until is not None:
        conditions.append(table.event_time < query.until)
    if query.after is not None:
        at, row_id = query.after
        conditions.append(
            sa.or_(table.event_time < at, sa.and_(table.event_time == at, table.id < row_id))
        )
    rows = await conn.execute(
        _select()
        .where(*conditions)
        .order_by(table.event_time.desc(), table.id.desc())
        .limit(query.limit + 1)
    )
    views = [_view(row) for row in rows]
    return views[: query.limit], len(views) > query.limit


async def get_pass(
    conn: AsyncConnection, pass_id: int, sites: frozenset[str]
) -> UnresolvedPassView:
    """One pass by id.

    Raises:
        NotFound: no such pass, or one of a site the caller is not for.
    """
    row = (await conn.execute(_select().where(unresolved_passes.c.id == pass_id))).first()
    if row is None or (sites and row.site not in sites):
        raise NotFound(f"no unresolved pass with id {pass_id}")
    return _view(row)


async def _locked(conn: AsyncConnection, condition: sa.ColumnElement[bool]) -> list[sa.Row[Any]]:
    # FOR UPDATE (PostgreSQL): a concurrent resolve of the same passes waits here, then
    # finds them resolved. Only the pass rows are locked, not their items.
    rows = await conn.execute(
        sa.select(unresolved_passes)
        .where(condition)
        .order_by(unresolved_passes.c.id)
        .with_for_update(of=unresolved_passes)
    )
    return list(rows)


def _already(row: sa.Row[Any]) -> str:
    moved = f" (movement {row.movement_id})" if row.movement_id is not None else ""
    return (
        f"unresolved pass {row.id} was resolved already: {row.resolution!r} by "
        f"{row.resolved_by} at {row.resolved_at.isoformat()}{moved}; to undo its movement, "
        "reverse it (POST /api/v1/reversals)"
    )


async def _select_by_ids(
    conn: AsyncConnection, ids: Sequence[int], resolver: Resolver
) -> list[sa.Row[Any]]:
    rows = await _locked(conn, unresolved_passes.c.id.in_(sorted(set(ids))))
    visible = {row.id: row for row in rows if not resolver.sites or row.site in resolver.sites}
    missing = [pass_id for pass_id in ids if pass_id not in visible]
    if missing:
        shown = ", ".join(map(str, missing[:10]))
        raise NotFound(f"no unresolved pass with id {shown}")
    for row in visible.values():
        if row.state != "open":
            raise Conflict(_already(row))
    return list(visible.values())


async def _select_group(
    conn: AsyncConnection, group: str, read_point: str | None, resolver: Resolver
) -> list[sa.Row[Any]]:
    conditions = [unresolved_passes.c.pass_group == group, unresolved_passes.c.state == "open"]
    if read_point is not None:
        conditions.append(unresolved_passes.c.read_point == read_point)
    if resolver.sites:
        conditions.append(unresolved_passes.c.site.in_(sorted(resolver.sites)))
    rows = await _locked(conn, sa.and_(*conditions))
    where = f" at {read_point}" if read_point is not None else ""
    if not rows:
        raise NotFound(f"no open unresolved pass in group {group!r}{where}")
    points = sorted({row.read_point for row in rows})
    if len(points) > 1:
        raise Conflict(
            f"group {group!r} has open passes at {len(points)} read points ({', '.join(points)});"
            " a group id is unique per gateway only: name the read point too"
        )
    if len(rows) > MAX_RESOLVE:
        raise Conflict(
            f"group {group!r} has {len(rows)} open passes, more than the {MAX_RESOLVE} one call "
            "resolves; resolve them by ids in parts"
        )
    return rows


def _as_event(row: sa.Row[Any], direction: Literal["in", "out"]) -> Event:
    """The pass as the edge would have sent it with ``direction``.

    Without its group: the ``group`` metric counts directions the edge decided, and the
    rules do not read it.
    """
    return Event(
        event_id=row.event_id,
        event_time=row.event_time,
        biz_step=BIZ_STEPS[direction],
        read_point=row.read_point,
        epc=row.epc,
        direction=direction,
        source="llrp",
    )


async def _movements_of(
    conn: AsyncConnection, event_ids: Sequence[str], actor: str
) -> list[MovementView]:
    if not event_ids:
        return []
    columns = [
        items.c[name] if name in ("sku", "gtin") else ledger.c[name]
        for name in MovementView.model_fields
    ]
    rows = await conn.execute(
        sa.select(*columns)
        .join(items, items.c.id == ledger.c.item_id)
        .where(
            ledger.c.event_id.in_(sorted(event_ids)),
            ledger.c.actor == actor,
            ledger.c.reverses.is_(None),
        )
        .order_by(ledger.c.id)
    )
    return [MovementView.model_validate(row._mapping) for row in rows]


async def _apply(
    conn: AsyncConnection,
    rows: Sequence[sa.Row[Any]],
    direction: Literal["in", "out"],
    resolver: Resolver,
    read_points: Mapping[str, ReadPointSettings],
    known_locations: set[str],
    policy: Policy,
    now: datetime,
) -> set[str]:
    """Apply the passes with ``direction``; returns the locations created."""
    gone = sorted({row.read_point for row in rows if row.read_point not in read_points})
    if gone:
        raise Conflict(
            f"read point {gone[0]!r} is no longer configured, so a direction has no stock "
            "effect there; configure it again, or resolve the pass with 'ignore'"
        )
    by_site: dict[str, list[Event]] = {}
    for row in rows:
        by_site.setdefault(row.site, []).append(_as_event(row, direction))
    created: set[str] = set()
    for site, events in sorted(by_site.items()):
        applied = await apply_fresh(
            conn,
            events,
            read_points,
            known_locations=known_locations,
            actor=resolver.name,
            site=site,
            now=now,
            policy=policy,
        )
        if applied.refused:
            # A site that refuses negative stock refuses it from a person too (409).
            raise Conflict(f"resolving as {direction!r} is refused: {applied.refused[0][1]}")
        created |= applied.new_locations
    return created


async def resolve(
    conn: AsyncConnection,
    selection: int | BulkResolveRequest,
    direction: Resolution,
    resolver: Resolver,
    *,
    read_points: Mapping[str, ReadPointSettings],
    known_locations: set[str],
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> tuple[ResolveResult, set[str]]:
    """Resolve one pass (its id) or several (a group, or ids), inside the caller's transaction.

    Returns:
        What was resolved, and the locations created (add them to the store's known
        locations once the transaction committed).

    Raises:
        NotFound: a pass does not exist or is of a site the caller is not for; no open
            pass in the group.
        Conflict: a pass is resolved already; a group spans read points or is too large;
            the read point is no longer configured.
    """
    if isinstance(selection, int):
        rows = await _select_by_ids(conn, [selection], resolver)
    elif selection.ids is not None:
        rows = await _select_by_ids(conn, selection.ids, resolver)
    else:
        assert selection.group is not None  # the request model wants group or ids
        rows = await _select_group(conn, selection.group, selection.read_point, resolver)
    created: set[str] = set()
    movements: list[MovementView] = []
    if direction != "ignore":
        created = await _apply(
            conn, rows, direction, resolver, read_points, known_locations, policy, now
        )
        movements = await _movements_of(conn, [row.event_id for row in rows], resolver.name)
    ids = [row.id for row in rows]
    done = await conn.execute(
        unresolved_passes.update()
        .where(unresolved_passes.c.id.in_(ids), unresolved_passes.c.state == "open")
        .values(state="resolved", resolution=direction, resolved_by=resolver.name, resolved_at=now)
    )
    if done.rowcount != len(ids):
        raise Conflict("another request resolved some of these passes meanwhile; list them again")
    first_movement: dict[str, int] = {}
    for movement in movements:
        if movement.event_id is not None:
            first_movement.setdefault(movement.event_id, movement.id)
    for row in rows:
        movement_id = first_movement.get(row.event_id)
        if movement_id is not None:
            await conn.execute(
                unresolved_passes.update()
                .where(unresolved_passes.c.id == row.id)
                .values(movement_id=movement_id)
            )
    await clear_if_done(conn, {row.read_point for row in rows}, now)
    views = await conn.execute(_select().where(unresolved_passes.c.id.in_(ids)))
    passes = sorted((_view(row) for row in views), key=lambda view: view.id)
    return ResolveResult(items=passes, movements=movements), created


__all__ = [
    "MAX_RESOLVE",
    "BulkResolveRequest",
    "PassQuery",
    "ResolveRequest",
    "ResolveResult",
    "Resolver",
    "StateFilter",
    "UnresolvedPassView",
    "get_pass",
    "list_passes",
    "resolve",
]
