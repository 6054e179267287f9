"""Pallets' contents (aggregations): recorded, listed, and the held events they release.

What a pallet (an SSCC) holds comes from ``POST /api/v1/aggregations`` (the contents as a
whole, replacing what was recorded) or from a partner's EPCIS ``AggregationEvent``
(``server.epcis.capture``: ``ADD`` adds children, ``DELETE`` removes the children it lists,
or all of them). Ingest then moves a pallet's contents whenever the pallet moves
(``server.rules.pallets``).

Recording contents releases the pallet's held events (``pallet_holds``: events that came
while its contents were unknown, each with an ``unknown_pallet`` alert). Their ids were
claimed when they came, so each applies once, through the same rules and writes as ingest
(``server.ingest.apply.apply_fresh``), as the gateway that sent it; the alert clears when none is
held any more. An event the site's negative-stock policy refuses stays held (listed in the
answer), as does one whose read point is no longer configured.

Bounds: ``MAX_PALLET_LINES`` children and quantity lines per pallet; nested pallets (an
SSCC among the children) are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import clear_alert
from server.config.settings import ReadPointSettings
from server.errors import Invalid, NotFound
from server.ingest.apply import apply_fresh
from server.ingest.pallet_contents import load_contents
from server.rules.alerts import UNKNOWN_PALLET
from server.rules.pallets import SSCC_URN_PREFIX, is_pallet_epc, sscc_of
from server.rules.policy import DEFAULT_POLICY, Policy
from server.store.dialect import upsert
from server.store.schema.core import MAX_EPC
from server.store.schema.pallets import MAX_LOT, aggregations, pallet_holds
from wire.gs1 import parse_gtin, parse_label, parse_sscc
from wire.identifiers import gtin_of
from wire.models import Event
from wire.scans import BarcodeError, PalletScan

MAX_PALLET_LINES: Final = 5000
"""Children and quantity lines one pallet may hold."""
MAX_PARENT_TEXT: Final = 512
MAX_HELD_RELEASED: Final = 1000
"""Held events one recording applies (the rest wait for the next)."""
Source = Literal["api", "epcis"]


class QuantityLineIn(BaseModel):
    """Items without serials on the pallet."""

    model_config = ConfigDict(extra="forbid")

    gtin: Annotated[str, Field(pattern=r"^(\d{8}|\d{12}|\d{13}|\d{14})$")]
    lot: str | None = Field(
        default=None, min_length=1, max_length=MAX_LOT, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    qty: int = Field(ge=1, le=1_000_000)


class AggregationRequest(BaseModel):
    """``POST /api/v1/aggregations``: what a pallet holds, all of it."""

    model_config = ConfigDict(extra="forbid")

    parent: str = Field(
        min_length=1,
        max_length=MAX_PARENT_TEXT,
        description="The pallet's SSCC: 18 digits, an element string (00)..., its EPC URN "
        "(urn:epc:id:sscc:...) or its GS1 Digital Link URI (https://id.gs1.org/00/...).",
    )
    children: list[Annotated[str, Field(min_length=9, max_length=MAX_EPC)]] = Field(
        default_factory=list,
        max_length=MAX_PALLET_LINES,
        description="EPC URNs of the tagged units on the pallet.",
    )
    quantities: list[QuantityLineIn] = Field(default_factory=list, max_length=MAX_PALLET_LINES)


class QuantityLineView(BaseModel):
    gtin: str
    lot: str | None
    qty: int


class AggregationView(BaseModel):
    """A pallet and what it holds."""

    sscc: str
    """The SSCC's 18 digits."""
    epc: str
    """Its EPC pure identity (what an SSCC tag reads as)."""
    children: list[str]
    """EPCs of the tagged units on it."""
    quantities: list[QuantityLineView]
    """Items without serials on it."""
    source: str
    """``api`` or ``epcis``: how the latest contents were recorded."""
    event_id: str | None
    """The EPCIS event that recorded them (``epcis``)."""
    actor: str
    recorded_at: datetime
    held_events: int
    """Events of this pallet held since before its contents were known (not applied yet)."""


class AggregationResult(BaseModel):
    """What recording a pallet's contents did."""

    aggregation: AggregationView
    released: list[str]
    """Event ids of the held events of this pallet applied now (their contents moved)."""
    still_held: list[str]
    """Held events not applied (refused for negative stock, read point gone, another
    site's), with their ids."""
    movements: int
    """Ledger rows the released events wrote."""


@dataclass(frozen=True, slots=True)
class Parent:
    sscc: str
    epc: str


def parse_parent(text: str) -> Parent:
    """A pallet named in any of the forms ``AggregationRequest.parent`` takes.

    Raises:
        Invalid: not an SSCC in any of them.
    """
    text = text.strip()
    if text.startswith(SSCC_URN_PREFIX):
        sscc = sscc_of(text)
        if sscc is None:
            raise Invalid("parent", f"{text[:80]!r} is not a valid SSCC EPC URN")
        return Parent(sscc, text)
    digits = text.removeprefix("(00)")
    try:
        scan = parse_sscc(digits) if len(digits) == 18 else parse_label(text)
    except BarcodeError as err:
        raise Invalid("parent", f"not an SSCC: {err.reason}") from err
    if not isinstance(scan, PalletScan):
        raise Invalid("parent", f"{text[:80]!r} names a trade item (GTIN), not an SSCC")
    return Parent(scan.sscc, scan.epc)


@dataclass(slots=True)
class Lines:
    """Contents to record, checked."""

    epcs: dict[str, str | None] = field(default_factory=dict)
    """EPC -> its GTIN (SGTIN) or None."""
    quantities: dict[tuple[str, str | None], int] = field(default_factory=dict)


def check_lines(
    children: Sequence[str], quantities: Sequence[tuple[str, str | None, int]], where: str
) -> Lines:
    """The contents, checked: EPC URNs that are units (not SSCCs), GTINs with check digits,
    no (GTIN, lot) twice, at most ``MAX_PALLET_LINES`` in all.

    Raises:
        Invalid: a line is wrong; the message names it.
    """
    lines = Lines()
    for index, epc in enumerate(children):
        if not epc.startswith("urn:epc:") or len(epc) > MAX_EPC or not epc.isprintable():
            raise Invalid(f"{where}children[{index}]", f"{epc[:80]!r} is not an EPC URN")
        if is_pallet_epc(epc):
            raise Invalid(
                f"{where}children[{index}]",
                "an SSCC inside a pallet is not supported: record the inner pallet's units "
                "on the outer one",
            )
        lines.epcs[epc] = gtin_of(epc)
    for index, (gtin, lot, qty) in enumerate(quantities):
        try:
            gtin14 = parse_gtin(gtin)
        except BarcodeError as err:
            raise Invalid(f"{where}quantities[{index}].gtin", err.reason) from err
        key = (gtin14, lot)
        if key in lines.quantities:
            raise Invalid(
                f"{where}quantities[{index}]", f"GTIN {gtin14} lot {lot!r} is listed twice"
            )
        lines.quantities[key] = qty
    if len(lines.epcs) + len(lines.quantities) > MAX_PALLET_LINES:
        raise Invalid(f"{where}children", f"a pallet holds at most {MAX_PALLET_LINES} lines")
    return lines


async def record(
    conn: AsyncConnection,
    parent: Parent,
    lines: Lines,
    *,
    source: Source,
    actor: str,
    now: datetime,
    event_id: str | None = None,
    replace: bool = True,
) -> None:
    """Record what ``parent`` holds: all of it (``replace``), or in addition (an EPCIS ``ADD``:
    EPCs already on it stay once, a quantity line of the same GTIN and lot is replaced)."""
    if replace:
        await conn.execute(aggregations.delete().where(aggregations.c.parent == parent.sscc))
    elif lines.quantities:
        for gtin, lot in lines.quantities:
            await conn.execute(
                aggregations.delete().where(
                    aggregations.c.parent == parent.sscc,
                    aggregations.c.child_epc.is_(None),
                    aggregations.c.gtin == gtin,
                    aggregations.c.lot.is_(None) if lot is None else aggregations.c.lot == lot,
                )
            )
    common = {
        "parent": parent.sscc,
        "parent_epc": parent.epc,
        "source": source,
        "event_id": event_id,
        "actor": actor,
        "recorded_at": now,
    }
    rows: list[dict[str, Any]] = [
        common | {"child_epc": epc, "gtin": gtin, "lot": None, "qty": 1}
        for epc, gtin in lines.epcs.items()
    ]
    rows.extend(
        common | {"child_epc": None, "gtin": gtin, "lot": lot, "qty": qty}
        for (gtin, lot), qty in lines.quantities.items()
    )
    if rows:
        await conn.execute(
            upsert(conn, aggregations).on_conflict_do_nothing(
                index_elements=[aggregations.c.parent, aggregations.c.child_epc]
            ),
            rows,
        )
    if not replace:
        total = await conn.scalar(
            sa.select(sa.func.count()).where(aggregations.c.parent == parent.sscc)
        )
        if int(total or 0) > MAX_PALLET_LINES:
            raise Invalid("children", f"a pallet holds at most {MAX_PALLET_LINES} lines")


async def remove(conn: AsyncConnection, sscc: str, epcs: Sequence[str] | None = None) -> int:
    """Take ``epcs`` off pallet ``sscc`` (None: everything); returns the lines removed."""
    condition = aggregations.c.parent == sscc
    if epcs is not None:
        condition = sa.and_(condition, aggregations.c.child_epc.in_(list(epcs)))
    done = await conn.execute(aggregations.delete().where(condition))
    return int(done.rowcount or 0)


@dataclass(frozen=True, slots=True)
class AggregationQuery:
    """Filters of ``GET /api/v1/aggregations``."""

    sscc: str | None = None
    child: str | None = None
    gtin: str | None = None
    after: str | None = None
    """The last SSCC of the previous page."""
    limit: int = 100


async def list_aggregations(
    conn: AsyncConnection, query: AggregationQuery
) -> tuple[list[AggregationView], bool]:
    """Pallets matching ``query`` by SSCC ascending, and whether more follow."""
    parents = sa.select(aggregations.c.parent).distinct()
    if query.sscc is not None:
        parents = parents.where(aggregations.c.parent == query.sscc)
    if query.child is not None:
        parents = parents.where(aggregations.c.child_epc == query.child)
    if query.gtin is not None:
        parents = parents.where(aggregations.c.gtin == query.gtin)
    if query.after is not None:
        parents = parents.where(aggregations.c.parent > query.after)
    found = list(
        (await conn.execute(parents.order_by(aggregations.c.parent).limit(query.limit + 1)))
        .scalars()
        .all()
    )
    more = len(found) > query.limit
    views = await _views(conn, found[: query.limit])
    return views, more


async def get_aggregation(conn: AsyncConnection, sscc: str) -> AggregationView:
    """One pallet's contents.

    Raises:
        NotFound: no contents are recorded for it.
    """
    views = await _views(conn, [sscc])
    if not views:
        raise NotFound(f"no contents are recorded for pallet {sscc}")
    return views[0]


async def _views(conn: AsyncConnection, ssccs: Sequence[str]) -> list[AggregationView]:
    if not ssccs:
        return []
    rows = (
        await conn.execute(
            sa.select(aggregations)
            .where(aggregations.c.parent.in_(list(ssccs)))
            .order_by(aggregations.c.parent, aggregations.c.id)
        )
    ).all()
    held: dict[str, int] = dict(
        (
            await conn.execute(
                sa.select(pallet_holds.c.sscc, sa.func.count())
                .where(pallet_holds.c.sscc.in_(list(ssccs)))
                .group_by(pallet_holds.c.sscc)
            )
        ).all()
    )
    views: dict[str, AggregationView] = {}
    for row in rows:
        view = views.get(row.parent)
        if view is None or row.recorded_at > view.recorded_at:
            base = view
            view = AggregationView(
                sscc=row.parent,
                epc=row.parent_epc,
                children=base.children if base else [],
                quantities=base.quantities if base else [],
                source=row.source,
                event_id=row.event_id,
                actor=row.actor,
                recorded_at=row.recorded_at,
                held_events=int(held.get(row.parent, 0)),
            )
            views[row.parent] = view
        if row.child_epc is not None:
            view.children.append(row.child_epc)
        else:
            view.quantities.append(QuantityLineView(gtin=row.gtin, lot=row.lot, qty=row.qty))
    return [views[sscc] for sscc in ssccs if sscc in views]


@dataclass(slots=True)
class Released:
    """What releasing a pallet's held events did."""

    released: list[str] = field(default_factory=list)
    still_held: list[str] = field(default_factory=list)
    movements: int = 0
    new_locations: set[str] = field(default_factory=set)


async def release_held(
    conn: AsyncConnection,
    sscc: str,
    *,
    read_points: Mapping[str, ReadPointSettings],
    known_locations: set[str],
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    sites: frozenset[str] = frozenset(),
) -> Released:
    """Apply the held events of pallet ``sscc`` now that its contents are recorded.

    A pallet with nothing recorded (an EPCIS ``DELETE`` emptied it) releases nothing: its
    held events would only be held again.

    Args:
        sites: the caller's sites (empty: all); held events of other sites stay held.
    """
    if not (await load_contents(conn, [sscc])).get(sscc):
        return Released()
    statement = (
        sa.select(pallet_holds)
        .where(pallet_holds.c.sscc == sscc)
        .order_by(pallet_holds.c.event_id)
        .limit(MAX_HELD_RELEASED)
    )
    if conn.dialect.name == "postgresql":
        # Two recordings at once: the second waits, then finds the rows gone.
        statement = statement.with_for_update()
    rows = (await conn.execute(statement)).all()
    result = Released()
    usable: list[tuple[Any, Event]] = []
    for row in rows:
        try:
            event = Event.model_validate(row.event)
        except ValidationError:
            result.still_held.append(row.event_id)
            continue
        if event.read_point not in read_points or (sites and row.site not in sites):
            result.still_held.append(row.event_id)
            continue
        usable.append((row, event))
    by_gateway: dict[tuple[str, str], list[Event]] = {}
    for row, event in usable:
        by_gateway.setdefault((row.site, row.gateway), []).append(event)
    for (site, gateway), events in sorted(by_gateway.items()):
        applied = await apply_fresh(
            conn,
            events,
            read_points,
            known_locations=known_locations,
            actor=gateway,
            site=site,
            now=now,
            policy=policy,
        )
        refused = {event.event_id for event, _ in applied.refused}
        result.still_held.extend(sorted(refused))
        result.released.extend(e.event_id for e in events if e.event_id not in refused)
        result.movements += applied.movements
        result.new_locations |= applied.new_locations
    if result.released:
        await conn.execute(
            pallet_holds.delete().where(pallet_holds.c.event_id.in_(result.released))
        )
    left = await conn.scalar(sa.select(sa.func.count()).where(pallet_holds.c.sscc == sscc))
    if not left:
        await clear_alert(
            conn, UNKNOWN_PALLET.kind, sscc, reason="its contents were recorded", now=now
        )
    return result
