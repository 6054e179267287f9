"""Orders in the store: create, read, change, and move purchase, sales and transfer orders.

What the kinds mean, their workflow, and how the edge's receipts and shipments count against
them is in ``server.rules.orders``; this module is what the API calls. Every writer runs in
the caller's transaction, locks the order (``FOR UPDATE`` on PostgreSQL, so a batch counting
against it waits, see ``server.ingest.order_book``), and keeps ``order_positions`` in step with
every change that moves on order, allocated or in transit.

Decisions written down here:

- An order's ``location`` (and a transfer order's ``destination``) must exist in the
  location master and may not be in the reserved ``transit`` site. A transfer order goes
  between two different sites.
- Lines name an existing item by GTIN or SKU (a mistyped GTIN is refused rather than
  creating an unreviewed item, as ingest must). The same item may be on several lines;
  receipts fill them oldest first. At most ``MAX_LINES`` lines per order.
- Line numbers are given by the store (1, 2, ...) and never reused within an order. A line
  may be removed only while nothing was received or shipped on it; its quantity may be
  changed (also below what was received: it is then over-received).
- **Closing** a purchase order reconciles it with what came in (ASN reconciliation): each
  line shows received, short and over, and each line received short raises
  ``short_receipt`` (subject ``<number>/<line no>``), each over-received one
  ``over_receipt`` (already raised when it happened). **Cancelling** clears the order's
  open ``short_receipt`` alerts.
- A key restricted to sites sees an order when one of its sites (``location``'s or
  ``destination``'s) is the key's, and may change it only when all of them are; an order it
  may not see is "not found".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import clear_alert, raise_alerts
from server.commands.asn import asn_on_status
from server.commands.locations import missing_locations
from server.commands.masterdata import NAME_PATTERN, Gtin, LocationId, Sku, Strict
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.ingest.order_book import add_change, shift_positions
from server.rules.alerts import OVER_RECEIPT, SHORT_RECEIPT
from server.rules.model import AlertSpec, OrderKind
from server.rules.orders import (
    EDITABLE,
    ORDER_STATUSES,
    PLACE_EDITABLE,
    TRANSITIONS,
    Figure,
    OrderKindSpec,
    OrderStatus,
    position_delta,
    positions,
)
from server.rules.policy import TRANSIT_SITE
from server.store.database import refused_on_conflict
from server.store.schema.core import items
from server.store.schema.orders import (
    MAX_ORDER_NOTE,
    MAX_PARTNER,
    ORDER_NUMBER_PATTERN,
    order_lines,
    orders,
)
from server.store.sites import site_of

MAX_LINES = 500
"""Lines one order may hold."""
MAX_LINE_QUANTITY = 10**9
NOTE_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$"
"""Free text; line breaks and tabs allowed, other control characters not."""


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as err:
        raise ValueError("the time is out of range in UTC") from err


OrderNumber = Annotated[str, Field(pattern=ORDER_NUMBER_PATTERN, description="e.g. PO-2024-0042")]
Partner = Annotated[str, Field(min_length=1, max_length=MAX_PARTNER, pattern=NAME_PATTERN)]
Note = Annotated[str, Field(min_length=1, max_length=MAX_ORDER_NOTE, pattern=NOTE_PATTERN)]
Quantity = Annotated[int, Field(ge=1, le=MAX_LINE_QUANTITY)]
Moment = Annotated[datetime, AfterValidator(_utc)]


class LineIn(Strict):
    """An order line: one item (by GTIN or by SKU) and its quantity."""

    gtin: Gtin | None = None
    sku: Sku | None = None
    quantity: Quantity

    @model_validator(mode="after")
    def _one_item(self) -> LineIn:
        if (self.gtin is None) == (self.sku is None):
            raise ValueError("a line names its item by exactly one of gtin and sku")
        return self


class OrderIn(Strict):
    """A new purchase or sales order."""

    number: OrderNumber
    """Unique among orders of its kind."""
    location: LocationId
    """Purchase orders: where the goods are received. Sales orders: where they ship from."""
    partner: Partner | None = None
    """The supplier (purchase orders) or customer (sales orders)."""
    expected_at: Moment | None = None
    """When the goods are expected (received, or shipped); no offset means UTC."""
    note: Note | None = None
    status: Literal["draft", "open"] = "draft"
    """``open`` places the order at once (it counts as on order / allocated)."""
    lines: list[LineIn] = Field(default_factory=list, max_length=MAX_LINES)


class TransferOrderIn(OrderIn):
    """A new transfer order: from ``location`` to ``destination`` at another site."""

    destination: LocationId
    """Where the goods are received."""


class OrderChanges(Strict):
    """A partial change: fields left out stay as they are; null clears an optional field."""

    partner: Partner | None = None
    expected_at: Moment | None = None
    note: Note | None = None
    location: LocationId | None = None
    """Only while the order is a draft."""
    destination: LocationId | None = None
    """Transfer orders, only while a draft."""


class StatusChange(Strict):
    status: Literal["open", "closed", "cancelled"]


class LineQuantity(Strict):
    quantity: Quantity


class OrderLineView(BaseModel):
    """A line and how far it is done.

    ``short`` and ``over`` compare the quantity with what was received (purchase and
    transfer orders) or shipped (sales orders).
    """

    model_config = ConfigDict(frozen=True)

    line_no: int
    sku: str
    gtin: str | None
    name: str
    quantity: int
    received: int
    shipped: int
    short: int
    over: int
    in_transit: int
    """Transfer orders: shipped and not yet received."""


class OrderSummary(BaseModel):
    """An order without its lines (lists)."""

    model_config = ConfigDict(frozen=True)

    id: int
    kind: OrderKind
    number: str
    status: OrderStatus
    location: str
    site: str
    destination: str | None
    destination_site: str | None
    partner: str | None
    expected_at: datetime | None
    note: str | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    closed_at: datetime | None
    line_count: int
    quantity: int
    """Sum of the lines' quantities."""
    received: int
    shipped: int


class OrderView(OrderSummary):
    """An order with its lines."""

    lines: list[OrderLineView]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def complete(self) -> bool:
        """No line is short."""
        return all(line.short == 0 for line in self.lines)


@dataclass(frozen=True, slots=True)
class OrderFilter:
    status: OrderStatus | None = None
    site: str | None = None
    """Orders with this site as origin or destination."""
    number: str | None = None
    partner: str | None = None
    item_id: int | None = None
    """Orders with a line of this item."""
    sites: frozenset[str] = frozenset()
    """The caller's sites (empty: all)."""


# --- reading ------------------------------------------------------------------------------


def _visible_to(sites: frozenset[str]) -> sa.ColumnElement[bool]:
    if not sites:
        return sa.true()
    names = sorted(sites)
    return sa.or_(orders.c.site.in_(names), orders.c.destination_site.in_(names))


def _totals() -> sa.Subquery:
    return (
        sa.select(
            order_lines.c.order_id,
            sa.func.count().label("line_count"),
            sa.func.sum(order_lines.c.quantity).label("quantity"),
            sa.func.sum(order_lines.c.received).label("received"),
            sa.func.sum(order_lines.c.shipped).label("shipped"),
        )
        .group_by(order_lines.c.order_id)
        .subquery("totals")
    )


def _summary_columns(totals: sa.Subquery) -> list[Any]:
    return [
        *orders.c,
        sa.func.coalesce(totals.c.line_count, 0).label("line_count"),
        sa.func.coalesce(totals.c.quantity, 0).label("quantity"),
        sa.func.coalesce(totals.c.received, 0).label("received"),
        sa.func.coalesce(totals.c.shipped, 0).label("shipped"),
    ]


def _line_view(spec: OrderKindSpec, row: Any) -> OrderLineView:
    quantity, received, shipped = int(row.quantity), int(row.received), int(row.shipped)
    filled = received if spec.fills == "received" else shipped
    return OrderLineView(
        line_no=row.line_no,
        sku=row.sku,
        gtin=row.gtin,
        name=row.name,
        quantity=quantity,
        received=received,
        shipped=shipped,
        short=max(quantity - filled, 0),
        over=max(filled - quantity, 0),
        in_transit=max(shipped - received, 0) if spec.has_destination else 0,
    )


async def _lines(conn: AsyncConnection, spec: OrderKindSpec, order_id: int) -> list[OrderLineView]:
    rows = await conn.execute(
        sa.select(
            order_lines.c.line_no,
            order_lines.c.quantity,
            order_lines.c.received,
            order_lines.c.shipped,
            items.c.sku,
            items.c.gtin,
            items.c.name,
        )
        .join(items, items.c.id == order_lines.c.item_id)
        .where(order_lines.c.order_id == order_id)
        .order_by(order_lines.c.line_no)
    )
    return [_line_view(spec, row) for row in rows]


async def get_order(
    conn: AsyncConnection, spec: OrderKindSpec, order_id: int, sites: frozenset[str] = frozenset()
) -> OrderView:
    """The order with its lines.

    Raises:
        NotFound: no order of this kind has that id (or the caller may not see it).
    """
    totals = _totals()
    row = (
        await conn.execute(
            sa.select(*_summary_columns(totals))
            .select_from(orders.outerjoin(totals, totals.c.order_id == orders.c.id))
            .where(orders.c.id == order_id, orders.c.kind == spec.kind, _visible_to(sites))
        )
    ).first()
    if row is None:
        raise NotFound(f"no {spec.title} with id {order_id}")
    return OrderView.model_validate({**row._mapping, "lines": await _lines(conn, spec, order_id)})


async def list_orders(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    where: OrderFilter,
    before_id: int | None,
    limit: int,
) -> tuple[list[OrderSummary], bool]:
    """Orders of ``spec``'s kind, newest first, below ``before_id``; and whether more follow."""
    conditions: list[sa.ColumnElement[bool]] = [
        orders.c.kind == spec.kind,
        _visible_to(where.sites),
    ]
    if where.status is not None:
        conditions.append(orders.c.status == where.status)
    if where.site is not None:
        conditions.append(
            sa.or_(orders.c.site == where.site, orders.c.destination_site == where.site)
        )
    if where.number is not None:
        conditions.append(orders.c.number == where.number)
    if where.partner is not None:
        conditions.append(orders.c.partner == where.partner)
    if where.item_id is not None:
        conditions.append(
            orders.c.id.in_(
                sa.select(order_lines.c.order_id).where(order_lines.c.item_id == where.item_id)
            )
        )
    if before_id is not None:
        conditions.append(orders.c.id < before_id)
    totals = _totals()
    rows = await conn.execute(
        sa.select(*_summary_columns(totals))
        .select_from(orders.outerjoin(totals, totals.c.order_id == orders.c.id))
        .where(*conditions)
        .order_by(orders.c.id.desc())
        .limit(limit + 1)
    )
    found = [OrderSummary.model_validate(row._mapping) for row in rows]
    return found[:limit], len(found) > limit


async def item_id_of(conn: AsyncConnection, gtin: str | None, sku: str | None) -> int | None:
    """The id of the item with ``gtin`` (14 digits) or ``sku``; None if there is none."""
    condition = items.c.gtin == gtin if gtin is not None else items.c.sku == sku
    found = await conn.scalar(sa.select(items.c.id).where(condition))
    return int(found) if found is not None else None


# --- writing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Locked:
    id: int
    number: str
    status: OrderStatus
    location: str
    destination: str | None
    site: str
    destination_site: str | None


async def _lock(
    conn: AsyncConnection, spec: OrderKindSpec, order_id: int, sites: frozenset[str]
) -> _Locked:
    row = (
        await conn.execute(
            sa.select(
                orders.c.id,
                orders.c.number,
                orders.c.status,
                orders.c.location,
                orders.c.destination,
                orders.c.site,
                orders.c.destination_site,
            )
            .where(orders.c.id == order_id, orders.c.kind == spec.kind, _visible_to(sites))
            .with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"no {spec.title} with id {order_id}")
    order = _Locked(**row._mapping)
    touched = {order.site, order.destination_site} - {None}
    if sites and not touched <= sites:
        raise Forbidden(
            f"{spec.title} {order.number} touches sites {sorted(s for s in touched if s)}; "
            f"this key is for {sorted(sites)} only"
        )
    return order


def _editable(spec: OrderKindSpec, order: _Locked) -> None:
    if order.status not in EDITABLE:
        raise Conflict(f"{spec.title} {order.number} is {order.status}; it can no longer change")


async def _check_places(
    conn: AsyncConnection, spec: OrderKindSpec, location: str, destination: str | None
) -> None:
    for field, place in (("location", location), ("destination", destination)):
        if place is not None and site_of(place) == TRANSIT_SITE:
            raise Invalid(field, f"{place!r} is in the reserved site {TRANSIT_SITE!r}")
    missing = await missing_locations(conn, [p for p in (location, destination) if p])
    if missing:
        field = "location" if location in missing else "destination"
        raise Invalid(field, f"no location {missing[0]!r}; create it first")
    if spec.has_destination:
        if destination is None:
            raise Invalid("destination", f"a {spec.title} needs a destination")
        if site_of(destination) == site_of(location):
            raise Invalid(
                "destination",
                f"a {spec.title} goes between sites; {location!r} and {destination!r} are both "
                f"at {site_of(location)!r} (move stock within a site with a transfer)",
            )
    elif destination is not None:
        raise Invalid("destination", f"a {spec.title} has no destination")


async def _resolve_lines(conn: AsyncConnection, lines: Sequence[LineIn]) -> list[int]:
    found: list[int] = []
    for index, line in enumerate(lines):
        item_id = await item_id_of(conn, line.gtin, line.sku)
        if item_id is None:
            field, value = ("gtin", line.gtin) if line.gtin is not None else ("sku", line.sku)
            raise Invalid(f"lines[{index}].{field}", f"no item with {field} {value!r}")
        found.append(item_id)
    return found


async def _shift_lines(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order_id: int,
    before: tuple[str, str, str | None],
    after: tuple[str, str, str | None],
) -> None:
    """Move the figures of every line of the order from state ``before`` to ``after``.

    A state is (status, location, destination).
    """
    rows = await conn.execute(
        sa.select(
            order_lines.c.item_id,
            order_lines.c.quantity,
            order_lines.c.received,
            order_lines.c.shipped,
        ).where(order_lines.c.order_id == order_id)
    )
    changes: dict[tuple[int, str], dict[Figure, int]] = {}
    for row in rows:
        counters = (int(row.quantity), int(row.received), int(row.shipped))
        old = positions(spec.kind, *before, *counters)
        new = positions(spec.kind, *after, *counters)
        add_change(changes, row.item_id, position_delta(old, new))
    await shift_positions(conn, changes)


async def _touch(
    conn: AsyncConnection, order_id: int, actor: str, now: datetime, **values: Any
) -> None:
    await conn.execute(
        orders.update()
        .where(orders.c.id == order_id)
        .values(updated_at=now, updated_by=actor, **values)
    )


async def create_order(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    body: OrderIn,
    actor: str,
    now: datetime,
) -> OrderView:
    """Add an order with its lines (``draft``, or ``open`` at once).

    Raises:
        Conflict: an order of this kind has that number already.
        Invalid: a location, the destination or a line's item is wrong.
    """
    destination = body.destination if isinstance(body, TransferOrderIn) else None
    await _check_places(conn, spec, body.location, destination)
    exists = await conn.scalar(
        sa.select(orders.c.id).where(orders.c.kind == spec.kind, orders.c.number == body.number)
    )
    if exists is not None:
        raise Conflict(f"{spec.title} {body.number!r} exists already (id {exists})")
    item_ids = await _resolve_lines(conn, body.lines)
    async with refused_on_conflict(Conflict(f"{spec.title} {body.number!r} exists already")):
        order_id = await conn.scalar(
            orders.insert()
            .values(
                kind=spec.kind,
                number=body.number,
                status=body.status,
                location=body.location,
                site=site_of(body.location),
                destination=destination,
                destination_site=site_of(destination) if destination else None,
                partner=body.partner,
                expected_at=body.expected_at,
                note=body.note,
                created_at=now,
                created_by=actor,
                updated_at=now,
                updated_by=actor,
                last_line_no=len(body.lines),
                placed_at=now if body.status == "open" else None,
            )
            .returning(orders.c.id)
        )
    assert order_id is not None
    if body.lines:
        await conn.execute(
            order_lines.insert(),
            [
                {
                    "order_id": order_id,
                    "line_no": number,
                    "item_id": item_id,
                    "quantity": line.quantity,
                    "received": 0,
                    "shipped": 0,
                }
                for number, (line, item_id) in enumerate(zip(body.lines, item_ids, strict=True), 1)
            ],
        )
    if body.status == "open":
        place = (body.location, destination)
        await _shift_lines(conn, spec, order_id, ("draft", *place), ("open", *place))
    return await get_order(conn, spec, order_id)


async def change_order(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order_id: int,
    changes: OrderChanges,
    actor: str,
    now: datetime,
    sites: frozenset[str] = frozenset(),
) -> OrderView:
    """Change an order's terms (and, while a draft, where it receives or ships).

    Raises:
        NotFound, Forbidden: as for reading; Forbidden also for a site outside the key's.
        Conflict: the order is closed or cancelled, or no longer a draft for a new place.
        Invalid: a new location or destination is wrong.
    """
    order = await _lock(conn, spec, order_id, sites)
    _editable(spec, order)
    sent = changes.model_fields_set
    values: dict[str, Any] = {
        field: getattr(changes, field)
        for field in ("partner", "expected_at", "note")
        if field in sent
    }
    if "location" in sent or "destination" in sent:
        if order.status not in PLACE_EDITABLE:
            raise Conflict(
                f"{spec.title} {order.number} is {order.status}; where it goes can change only "
                "while it is a draft"
            )
        location = changes.location if changes.location is not None else order.location
        destination = changes.destination if "destination" in sent else order.destination
        await _check_places(conn, spec, location, destination)
        for place in (location, destination):
            if place is not None and sites and site_of(place) not in sites:
                raise Forbidden(f"location {place!r} is outside this key's sites {sorted(sites)}")
        values.update(
            location=location,
            site=site_of(location),
            destination=destination,
            destination_site=site_of(destination) if destination else None,
        )
    await _touch(conn, order.id, actor, now, **values)
    return await get_order(conn, spec, order.id)


async def _received_anything(conn: AsyncConnection, order_id: int) -> bool:
    total = await conn.scalar(
        sa.select(
            sa.func.coalesce(sa.func.sum(order_lines.c.received + order_lines.c.shipped), 0)
        ).where(order_lines.c.order_id == order_id)
    )
    return bool(total)


def _reconciliation(spec: OrderKindSpec, view: OrderView) -> list[AlertSpec]:
    """Short and over receipt alerts of a closed purchase order's lines."""
    if spec.kind != "purchase":
        return []
    found: list[AlertSpec] = []
    for line in view.lines:
        subject = f"{view.number}/{line.line_no}"
        evidence = {
            "order": view.number,
            "order_id": view.id,
            "line": line.line_no,
            "sku": line.sku,
            "gtin": line.gtin,
            "ordered": line.quantity,
            "received": line.received,
            "short": line.short,
            "over": line.over,
            "partner": view.partner,
        }
        if line.short:
            found.append(SHORT_RECEIPT.raise_(subject, evidence, site=view.site))
        elif line.over:
            found.append(OVER_RECEIPT.raise_(subject, evidence, site=view.site))
    return found


async def change_status(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order_id: int,
    status: OrderStatus,
    actor: str,
    now: datetime,
    sites: frozenset[str] = frozenset(),
) -> OrderView:
    """Move an order along its workflow (``server.rules.orders.TRANSITIONS``).

    Raises:
        NotFound, Forbidden: as for ``change_order``.
        Conflict: the workflow does not allow the change (the reason says why).
    """
    order = await _lock(conn, spec, order_id, sites)
    if order.status == status:
        return await get_order(conn, spec, order.id)
    transition = TRANSITIONS.get((order.status, status))
    if transition is None:
        allowed = sorted(to for (start, to) in TRANSITIONS if start == order.status)
        raise Conflict(
            f"{spec.title} {order.number} is {order.status}; it can go to "
            f"{', '.join(allowed) if allowed else 'no other status'}, not {status}"
        )
    if transition.untouched and await _received_anything(conn, order.id):
        raise Conflict(
            f"{spec.title} {order.number} has goods received or shipped on it; close it instead "
            "of cancelling it"
        )
    place = (order.location, order.destination)
    await _shift_lines(conn, spec, order.id, (order.status, *place), (status, *place))
    final = status in ("closed", "cancelled")
    placed = {"placed_at": now} if status == "open" else {}
    await _touch(
        conn, order.id, actor, now, status=status, closed_at=now if final else None, **placed
    )
    view = await get_order(conn, spec, order.id)
    if spec.kind == "purchase":
        # Units a supplier's ASN announced: missing ones alerted on close (server.commands.asn).
        await asn_on_status(conn, view.id, view.number, view.site, status, now)
    if status == "closed":
        await raise_alerts(conn, _reconciliation(spec, view), view.site, now)
    elif status == "cancelled" and spec.kind == "purchase":
        for line in view.lines:
            await clear_alert(
                conn,
                SHORT_RECEIPT.kind,
                f"{view.number}/{line.line_no}",
                reason="order cancelled",
                now=now,
            )
    return view


async def _line(conn: AsyncConnection, order_id: int, line_no: int) -> Any:
    row = (
        await conn.execute(
            sa.select(order_lines).where(
                order_lines.c.order_id == order_id, order_lines.c.line_no == line_no
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"order {order_id} has no line {line_no}")
    return row


def _line_positions(
    spec: OrderKindSpec, order: _Locked, quantity: int, received: int, shipped: int
) -> dict[tuple[str, Figure], int]:
    return positions(
        spec.kind, order.status, order.location, order.destination, quantity, received, shipped
    )


async def add_line(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order_id: int,
    line: LineIn,
    actor: str,
    now: datetime,
    sites: frozenset[str] = frozenset(),
) -> OrderView:
    """Add a line to a draft or open order (numbered after the highest so far).

    Raises:
        NotFound, Forbidden, Conflict: as for ``change_order``; Conflict also when the order
            holds ``MAX_LINES`` lines.
        Invalid: no such item.
    """
    order = await _lock(conn, spec, order_id, sites)
    _editable(spec, order)
    [item_id] = await _resolve_lines(conn, [line])
    count = await conn.scalar(sa.select(sa.func.count()).where(order_lines.c.order_id == order.id))
    if (count or 0) >= MAX_LINES:
        raise Conflict(f"{spec.title} {order.number} holds {MAX_LINES} lines, the most it may")
    # The order row is locked, so the number is ours; removed lines' numbers stay retired.
    line_no = await conn.scalar(
        orders.update()
        .where(orders.c.id == order.id)
        .values(last_line_no=orders.c.last_line_no + 1)
        .returning(orders.c.last_line_no)
    )
    await conn.execute(
        order_lines.insert().values(
            order_id=order.id,
            line_no=line_no,
            item_id=item_id,
            quantity=line.quantity,
            received=0,
            shipped=0,
        )
    )
    changes: dict[tuple[int, str], dict[Figure, int]] = {}
    add_change(changes, item_id, _line_positions(spec, order, line.quantity, 0, 0))
    await shift_positions(conn, changes)
    await _touch(conn, order.id, actor, now)
    return await get_order(conn, spec, order.id)


async def change_line(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order_id: int,
    line_no: int,
    quantity: int,
    actor: str,
    now: datetime,
    sites: frozenset[str] = frozenset(),
) -> OrderView:
    """Set a line's quantity (draft or open orders).

    Raises:
        NotFound: no such order or line. Forbidden, Conflict: as for ``change_order``.
    """
    order = await _lock(conn, spec, order_id, sites)
    _editable(spec, order)
    row = await _line(conn, order.id, line_no)
    received, shipped = int(row.received), int(row.shipped)
    before = _line_positions(spec, order, int(row.quantity), received, shipped)
    after = _line_positions(spec, order, quantity, received, shipped)
    await conn.execute(
        order_lines.update().where(order_lines.c.id == row.id).values(quantity=quantity)
    )
    changes: dict[tuple[int, str], dict[Figure, int]] = {}
    add_change(changes, row.item_id, position_delta(before, after))
    await shift_positions(conn, changes)
    await _touch(conn, order.id, actor, now)
    return await get_order(conn, spec, order.id)


async def remove_line(
    conn: AsyncConnection,
    spec: OrderKindSpec,
    order_id: int,
    line_no: int,
    actor: str,
    now: datetime,
    sites: frozenset[str] = frozenset(),
) -> OrderView:
    """Remove a line nothing was received or shipped on (draft or open orders).

    Raises:
        NotFound: no such order or line. Forbidden: as for ``change_order``.
        Conflict: the order can no longer change, or the line has receipts or shipments.
    """
    order = await _lock(conn, spec, order_id, sites)
    _editable(spec, order)
    row = await _line(conn, order.id, line_no)
    if row.received or row.shipped:
        raise Conflict(
            f"line {line_no} of {spec.title} {order.number} has goods received or shipped on "
            "it; change its quantity instead"
        )
    changes: dict[tuple[int, str], dict[Figure, int]] = {}
    removed = _line_positions(spec, order, int(row.quantity), 0, 0)
    add_change(changes, row.item_id, position_delta(removed, {}))
    await conn.execute(order_lines.delete().where(order_lines.c.id == row.id))
    await shift_positions(conn, changes)
    await _touch(conn, order.id, actor, now)
    return await get_order(conn, spec, order.id)


async def rebuild_positions(conn: AsyncConnection) -> dict[tuple[int, str], dict[Figure, int]]:
    """``order_positions`` recomputed from the open orders (what it should hold), non-zero."""
    rows = await conn.execute(
        sa.select(
            orders.c.kind,
            orders.c.status,
            orders.c.location,
            orders.c.destination,
            order_lines.c.item_id,
            order_lines.c.quantity,
            order_lines.c.received,
            order_lines.c.shipped,
        )
        .join(orders, orders.c.id == order_lines.c.order_id)
        .where(orders.c.status == "open")
    )
    expected: dict[tuple[int, str], dict[Figure, int]] = {}
    for row in rows:
        add_change(
            expected,
            row.item_id,
            positions(
                row.kind,
                row.status,
                row.location,
                row.destination,
                int(row.quantity),
                int(row.received),
                int(row.shipped),
            ),
        )
    return {
        key: {figure: amount for figure, amount in figures.items() if amount}
        for key, figures in expected.items()
        if any(figures.values())
    }


__all__ = [
    "MAX_LINES",
    "ORDER_STATUSES",
    "LineIn",
    "LineQuantity",
    "OrderChanges",
    "OrderFilter",
    "OrderIn",
    "OrderLineView",
    "OrderSummary",
    "OrderView",
    "StatusChange",
    "TransferOrderIn",
    "add_line",
    "change_line",
    "change_order",
    "change_status",
    "create_order",
    "get_order",
    "item_id_of",
    "list_orders",
    "rebuild_positions",
    "remove_line",
]
