"""Orders in the store: create, change, and move purchase, sales and transfer orders.

What the kinds mean, their workflow, and how the edge's receipts and shipments count against
them is in ``server.rules.orders``; this module is what the API calls to change an order (its
lines change in ``server.commands.order_lines``; the bodies and views are in
``server.commands.order_models``, the reads in ``server.queries.orders``). Every writer runs
in the caller's transaction, locks the order (``FOR UPDATE`` on PostgreSQL, so a batch
counting against it waits, see ``server.ingest.order_book``), and keeps ``order_positions`` in
step with every change that moves on order, allocated or in transit.

Decisions written down here:

- An order's ``location`` (and a transfer order's ``destination``) must exist in the
  location master and may not be in the reserved ``transit`` site. A transfer order goes
  between two different sites.
- Lines name an existing item by GTIN or SKU (a mistyped GTIN is refused rather than
  creating an unreviewed item, as ingest must). The same item may be on several lines;
  receipts fill them oldest first. At most ``MAX_LINES`` lines per order.
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
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import clear_alert, raise_alerts
from server.commands.asn import asn_on_status
from server.commands.locations import missing_locations
from server.commands.order_models import LineIn, OrderChanges, OrderIn, OrderView, TransferOrderIn
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.ingest.order_book import add_change, shift_positions
from server.queries.orders import get_order, item_id_of, visible_to
from server.rules.alerts import OVER_RECEIPT, SHORT_RECEIPT
from server.rules.model import AlertSpec
from server.rules.orders import (
    EDITABLE,
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
from server.store.schema.orders import order_lines, orders
from server.store.sites import site_of


@dataclass(frozen=True, slots=True)
class LockedOrder:
    """What a writer needs of the order it locked."""

    id: int
    number: str
    status: OrderStatus
    location: str
    destination: str | None
    site: str
    destination_site: str | None


async def lock_order(
    conn: AsyncConnection, spec: OrderKindSpec, order_id: int, sites: frozenset[str]
) -> LockedOrder:
    """Lock the order for the rest of the transaction (the first step of every writer).

    Raises:
        NotFound: no order of this kind has that id, or a key for ``sites`` may not see it.
        Forbidden: the order touches a site outside ``sites`` (empty: all).
    """
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
            .where(orders.c.id == order_id, orders.c.kind == spec.kind, visible_to(sites))
            .with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"no {spec.title} with id {order_id}")
    order = LockedOrder(**row._mapping)
    touched = {order.site, order.destination_site} - {None}
    if sites and not touched <= sites:
        raise Forbidden(
            f"{spec.title} {order.number} touches sites {sorted(s for s in touched if s)}; "
            f"this key is for {sorted(sites)} only"
        )
    return order


def check_editable(spec: OrderKindSpec, order: LockedOrder) -> None:
    """Raise ``Conflict`` unless the order's terms and lines may still change."""
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


async def resolve_lines(conn: AsyncConnection, lines: Sequence[LineIn]) -> list[int]:
    """The item ids of ``lines``; ``Invalid`` naming the first line whose item is unknown."""
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


async def touch_order(
    conn: AsyncConnection, order_id: int, actor: str, now: datetime, **values: Any
) -> None:
    """Set ``values`` on the order and record who changed it when."""
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
    item_ids = await resolve_lines(conn, body.lines)
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
    order = await lock_order(conn, spec, order_id, sites)
    check_editable(spec, order)
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
    await touch_order(conn, order.id, actor, now, **values)
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
    order = await lock_order(conn, spec, order_id, sites)
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
    await touch_order(
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


__all__ = [
    "LockedOrder",
    "change_order",
    "change_status",
    "check_editable",
    "create_order",
    "lock_order",
    "resolve_lines",
    "touch_order",
]
