"""Orders as data, and how receipts and shipments count against them. Pure.

Three kinds of order share one workflow and one line shape (``ORDER_KINDS``):

- **purchase** orders expect goods at ``location`` (their site receives them); an open
  line's unreceived quantity is **on order** there.
- **sales** orders ship from ``location``; an open line's unshipped quantity is
  **allocated** there.
- **transfer** orders ship from ``location`` to ``destination`` at another site; the
  unshipped quantity is allocated at ``location``, the shipped but not yet received
  quantity is **in transit** to ``destination``. While on the road the goods are on hand
  at ``transit.<order number>`` (``server.rules.policy``).

Status workflow (``TRANSITIONS``): ``draft`` -> ``open`` -> ``closed``, and ``draft`` or
``open`` -> ``cancelled`` (an open order only while nothing has been received or shipped
on it; close it otherwise). Only open orders count towards on order, allocated and in
transit, and only open orders take receipts and shipments. Lines and terms may change
while ``draft`` or ``open``; where the goods go (``location``, ``destination``) only while
``draft``.

How the edge's stock movements count (``OrderBook.settle``, inside the batch's plan), with
open lines taken oldest order first:

- a **shipment** at a site first fills open transfer order lines from that site for the
  item: that part becomes a transfer to the order's transit location and the unit is
  ``in_transit``. The rest counts against open sales order lines from the site; what no
  line has room for is counted on the last one (over-shipped) and, as does a shipment of
  an item with no open sales order line at all, raises ``unexpected_shipment`` (subject
  ``<site>/<item>``, item = GTIN or reserved SKU).
- a **receipt** at a site of a barcode quantity first takes goods in transit to that site
  on transfer orders (a transfer from the transit location). A tagged unit in transit is
  received from its own transit location by the receive rule. The rest counts against
  open purchase order lines for the site: what exceeds the lines is counted on the last
  one and raises ``over_receipt`` (subject ``<PO number>/<line no>``); a receipt with no
  open purchase order line raises ``unexpected_receipt`` (subject ``<site>/<item>``).
  Over-filling is judged on the counters the store returns after the batch
  (``overfill_alerts``), so batches applied concurrently cannot overfill a line unseen.
  ``short_receipt`` is raised when an order is closed (``server.commands.orders``).
- any movement out of a transit location into a site (a receipt, an arrival, a count)
  counts as received on that transfer order.

Both alerts on unexpected goods are raised only at sites that keep orders for that
direction unless ``[orders]`` says otherwise (``server.rules.policy``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from server.rules.alerts import OVER_RECEIPT, UNEXPECTED_RECEIPT, UNEXPECTED_SHIPMENT
from server.rules.model import (
    AlertSpec,
    LineDelta,
    Movement,
    OpenLine,
    OrderKind,
    Outcome,
    RuleInput,
    UnitState,
)
from server.rules.policy import Policy, site_of, transit_location, transit_order

OrderStatus = Literal["draft", "open", "closed", "cancelled"]
ORDER_STATUSES: tuple[OrderStatus, ...] = ("draft", "open", "closed", "cancelled")
Figure = Literal["on_order", "allocated", "in_transit"]
Place = Literal["location", "destination"]
EDITABLE: frozenset[OrderStatus] = frozenset({"draft", "open"})
"""Statuses in which lines and terms may change."""
PLACE_EDITABLE: frozenset[OrderStatus] = frozenset({"draft"})
"""Statuses in which ``location`` and ``destination`` may change."""


def _unreceived(quantity: int, received: int, shipped: int) -> int:
    return max(quantity - received, 0)


def _unshipped(quantity: int, received: int, shipped: int) -> int:
    return max(quantity - shipped, 0)


def _on_the_road(quantity: int, received: int, shipped: int) -> int:
    return max(shipped - received, 0)


@dataclass(frozen=True, slots=True)
class Position:
    """One figure an open order line adds to a stock row.

    Args:
        figure: ``on_order``, ``allocated`` or ``in_transit``.
        at: whether it shows at the order's ``location`` or its ``destination``.
        amount: ``(quantity, received, shipped) -> contribution``.
    """

    figure: Figure
    at: Place
    amount: Callable[[int, int, int], int]


@dataclass(frozen=True, slots=True)
class OrderKindSpec:
    """One kind of order.

    Args:
        kind: its name in the store.
        title: for messages.
        path: its API resource (``/api/v1/<path>``).
        positions: what an open line adds to the stock rows.
        has_destination: transfer orders name where they go.
        fills: the line counter that says how far a line is done (``received`` or
            ``shipped``); short and over are measured on it.
    """

    kind: OrderKind
    title: str
    path: str
    positions: tuple[Position, ...]
    has_destination: bool
    fills: Literal["received", "shipped"]


PURCHASE = OrderKindSpec(
    "purchase",
    "purchase order",
    "purchase-orders",
    (Position("on_order", "location", _unreceived),),
    has_destination=False,
    fills="received",
)
SALES = OrderKindSpec(
    "sales",
    "sales order",
    "sales-orders",
    (Position("allocated", "location", _unshipped),),
    has_destination=False,
    fills="shipped",
)
TRANSFER = OrderKindSpec(
    "transfer",
    "transfer order",
    "transfer-orders",
    (
        Position("allocated", "location", _unshipped),
        Position("in_transit", "destination", _on_the_road),
    ),
    has_destination=True,
    fills="received",
)
ORDER_KINDS: Mapping[OrderKind, OrderKindSpec] = {
    spec.kind: spec for spec in (PURCHASE, SALES, TRANSFER)
}


@dataclass(frozen=True, slots=True)
class Transition:
    """A status change an operator may make.

    Args:
        untouched: allowed only while nothing has been received or shipped on the order.
    """

    untouched: bool = False


TRANSITIONS: Mapping[tuple[OrderStatus, OrderStatus], Transition] = {
    ("draft", "open"): Transition(),
    ("draft", "cancelled"): Transition(),
    ("open", "closed"): Transition(),
    ("open", "cancelled"): Transition(untouched=True),
}


def positions(
    kind: OrderKind,
    status: str,
    location: str,
    destination: str | None,
    quantity: int,
    received: int,
    shipped: int,
) -> dict[tuple[str, Figure], int]:
    """What one line adds to the stock rows: ``(location, figure) -> amount`` (non-zero)."""
    if status != "open":
        return {}
    places = {"location": location, "destination": destination}
    found: dict[tuple[str, Figure], int] = {}
    for position in ORDER_KINDS[kind].positions:
        place = places[position.at]
        amount = position.amount(quantity, received, shipped)
        if place is not None and amount:
            key = (place, position.figure)
            found[key] = found.get(key, 0) + amount
    return found


def position_delta(
    before: Mapping[tuple[str, Figure], int], after: Mapping[tuple[str, Figure], int]
) -> dict[tuple[str, Figure], int]:
    """``after - before`` per key, without zeros."""
    keys = set(before) | set(after)
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in keys}
    return {key: amount for key, amount in delta.items() if amount}


@dataclass(slots=True)
class _Line:
    """An open line and its counters as the batch so far has moved them."""

    line: OpenLine
    received: int
    shipped: int

    @property
    def unshipped(self) -> int:
        return self.line.quantity - self.shipped

    @property
    def unreceived(self) -> int:
        return self.line.quantity - self.received

    @property
    def on_the_road(self) -> int:
        return self.shipped - self.received


class OrderBook:
    """The open order lines a batch's movements count against (one per plan).

    Args:
        lines: the open lines of the items the batch names.
        policy: which unexpected-goods alerts to raise.
        ordering_sites: (direction, site) of sites that keep orders (``StockState``).
    """

    def __init__(
        self,
        lines: Iterable[OpenLine],
        policy: Policy,
        ordering_sites: frozenset[tuple[Literal["in", "out"], str]] = frozenset(),
    ) -> None:
        self._policy = policy
        self._ordering_sites = ordering_sites
        self._by_item: dict[tuple[OrderKind, str], list[_Line]] = {}
        for line in sorted(lines, key=lambda line: (line.order_id, line.line_no)):
            self._by_item.setdefault((line.kind, line.item), []).append(
                _Line(line, line.received, line.shipped)
            )
        self._touched: dict[int, _Line] = {}
        # No open line to count against and no unexpected-goods alert to raise: ``settle``
        # can only hand back what it was given (the common case with no orders in use).
        self._idle = not self._by_item and not any(
            self._may_alert(direction) for direction in ("in", "out")
        )

    def _lines(self, kind: OrderKind, item: str, where: Callable[[OpenLine], bool]) -> list[_Line]:
        return [line for line in self._by_item.get((kind, item), ()) if where(line.line)]

    def _unexpected(self, direction: Literal["in", "out"]) -> str:
        if direction == "in":
            return self._policy.unexpected_receipts
        return self._policy.unexpected_shipments

    def _may_alert(self, direction: Literal["in", "out"]) -> bool:
        """Whether an unexpected receipt (in) or shipment (out) could be alerted anywhere."""
        setting = self._unexpected(direction)
        if setting == "with_orders":
            return any(kind == direction for kind, _ in self._ordering_sites)
        return setting == "always"

    def _alerts_unexpected(self, direction: Literal["in", "out"], site: str) -> bool:
        setting = self._unexpected(direction)
        if setting == "with_orders":
            return (direction, site) in self._ordering_sites
        return setting == "always"

    def _count(self, line: _Line, *, received: int = 0, shipped: int = 0) -> None:
        line.received += received
        line.shipped += shipped
        self._touched[line.line.line_id] = line

    def deltas(self) -> list[LineDelta]:
        """What the batch added to each line's counters, by line id."""
        return [
            LineDelta(
                line_id=line_id,
                received=line.received - line.line.received,
                shipped=line.shipped - line.line.shipped,
            )
            for line_id, line in sorted(self._touched.items())
        ]

    def settle(self, inp: RuleInput, outcome: Outcome) -> Outcome:
        """Count ``outcome``'s movements against open lines; may split and redirect them."""
        if not outcome.movements or self._idle:
            return outcome
        movements: list[Movement] = []
        units = {unit.epc: unit for unit in outcome.units}
        alerts = list(outcome.alerts)
        site = inp.site or site_of(inp.read_point.inbound_location)
        for movement in outcome.movements:
            if movement.kind == "shipment":
                movements.extend(self._ship(inp, site, movement, units, alerts))
            elif movement.kind == "receipt":
                movements.extend(self._receive(inp, site, movement, alerts))
            else:
                self._arrive(movement)
                movements.append(movement)
        unchanged = (
            len(movements) == len(outcome.movements)
            and all(new is old for new, old in zip(movements, outcome.movements, strict=True))
            and len(alerts) == len(outcome.alerts)
            and all(units[unit.epc] is unit for unit in outcome.units)
        )
        if unchanged:
            return outcome
        return replace(
            outcome, movements=tuple(movements), units=tuple(units.values()), alerts=tuple(alerts)
        )

    def _ship(
        self,
        inp: RuleInput,
        site: str,
        movement: Movement,
        units: dict[str, UnitState],
        alerts: list[AlertSpec],
    ) -> list[Movement]:
        item = movement.item.ref
        left = movement.quantity
        out: list[Movement] = []
        for line in self._lines("transfer", item, lambda line: site_of(line.location) == site):
            take = min(left, line.unshipped)
            if take <= 0:
                continue
            self._count(line, shipped=take)
            target = transit_location(line.line.number)
            out.append(replace(movement, kind="transfer", to_location=target, quantity=take))
            unit = units.get(movement.epc) if movement.epc is not None else None
            if unit is not None:
                units[unit.epc] = replace(unit, status="in_transit", location=target)
            left -= take
            if not left:
                return out
        lines = self._lines("sales", item, lambda line: site_of(line.location) == site)
        for line in lines:
            take = min(left, line.unshipped)
            if take > 0:
                self._count(line, shipped=take)
                left -= take
        shipped = replace(movement, quantity=movement.quantity - sum(m.quantity for m in out))
        if left and lines:
            # Over-shipped: counted on the last line; the alert comes from the counters the
            # store returns (``overfill_alerts``), which also see concurrent batches.
            self._count(lines[-1], shipped=left)
        elif left and self._alerts_unexpected("out", site):
            alerts.append(
                UNEXPECTED_SHIPMENT.raise_(
                    f"{site}/{item}",
                    inp.evidence() | {"site": site, "item": item, "quantity": left},
                    site=site,
                )
            )
        out.append(shipped)
        return out

    def _receive(
        self, inp: RuleInput, site: str, movement: Movement, alerts: list[AlertSpec]
    ) -> list[Movement]:
        item = movement.item.ref
        left = movement.quantity
        out: list[Movement] = []
        if movement.epc is None:
            # Tagged units in transit are received from their own transit location by the
            # receive rule; a barcode quantity takes the oldest goods on the road.
            for line in self._lines(
                "transfer",
                item,
                lambda line: line.destination is not None and site_of(line.destination) == site,
            ):
                take = min(left, line.on_the_road)
                if take <= 0:
                    continue
                self._count(line, received=take)
                source = transit_location(line.line.number)
                out.append(replace(movement, kind="transfer", from_location=source, quantity=take))
                left -= take
                if not left:
                    return out
        lines = self._lines("purchase", item, lambda line: site_of(line.location) == site)
        for line in lines:
            take = min(left, line.unreceived)
            if take > 0:
                self._count(line, received=take)
                left -= take
        if left and lines:
            # Over-received: counted on the last line; alerted by ``overfill_alerts``.
            self._count(lines[-1], received=left)
        elif left and self._alerts_unexpected("in", site):
            alerts.append(
                UNEXPECTED_RECEIPT.raise_(
                    f"{site}/{item}",
                    inp.evidence() | {"site": site, "item": item, "quantity": left},
                    site=site,
                )
            )
        # (Most receipts are not split at all: keep the movement itself, no copy.)
        out.append(
            replace(movement, quantity=movement.quantity - sum(m.quantity for m in out))
            if out
            else movement
        )
        return out

    def _arrive(self, movement: Movement) -> None:
        number = transit_order(movement.from_location)
        if number is None or transit_order(movement.to_location) is not None:
            return
        lines = [
            line
            for line in self._lines("transfer", movement.item.ref, lambda line: True)
            if line.line.number == number
        ]
        if not lines:
            return
        open_lines = [line for line in lines if line.on_the_road > 0]
        left = movement.quantity
        for line in open_lines:
            take = min(left, line.on_the_road)
            self._count(line, received=take)
            left -= take
            if not left:
                return
        self._count(lines[-1], received=left)


def overfill_alerts(
    line: OpenLine, delta: LineDelta, quantity: int, received: int, shipped: int, policy: Policy
) -> list[AlertSpec]:
    """The alerts a batch's counts on ``line`` raise, from the counters after them.

    Judged on the counters the store returns rather than on the batch's own view, so two
    batches that each fit in a line but together overfill it (two server instances) raise
    the alert too.

    Args:
        line: the line as loaded before the batch.
        delta: what the batch added.
        quantity: the line's quantity.
        received: its received counter after the batch.
        shipped: its shipped counter after the batch.
        policy: whether over-shipments alert (``unexpected_shipments``: not ``never``).
    """
    evidence: dict[str, object] = {
        "order": line.number,
        "order_id": line.order_id,
        "line": line.line_no,
        "item": line.item,
        "ordered": quantity,
        "received": received,
        "shipped": shipped,
    }
    site = site_of(line.location)
    if line.kind == "purchase" and delta.received > 0 and received > quantity:
        return [OVER_RECEIPT.raise_(f"{line.number}/{line.line_no}", evidence, site=site)]
    if (
        line.kind == "sales"
        and delta.shipped > 0
        and shipped > quantity
        and policy.unexpected_shipments != "never"
    ):
        over = min(delta.shipped, shipped - quantity)
        return [
            UNEXPECTED_SHIPMENT.raise_(
                f"{site}/{line.item}",
                evidence | {"site": site, "quantity": over, "over_shipped_order": line.number},
                site=site,
                read_point=f"the dock (sales order {line.number} over-shipped)",
            )
        ]
    return []
