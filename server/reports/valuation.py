"""The value of stock: moving-average and FIFO books per item and site, kept from the ledger.

Costs never change quantities: the books replay the ledger (``server.store.schema.core``) with the
costs of ``server.store.schema.costs`` beside it, and only value what the ledger moved. They are
computed when a report asks, in one pass over the ledger rows of the items asked for, in
event-time order (ties by id), so a late event is valued where it happened.

What moves value. Only stock crossing a site's boundary: a row into a site from nowhere (a
receipt, stock found, a count that found more), out of a site to nowhere (a shipment, a
loss, a count that found less), or from one site to another (a transfer, goods going into
or out of ``transit``). Moves inside a site change where stock is, not what it is worth.

The cost of stock coming in from nowhere, first that applies:

1. a cost recorded against that ledger row (``receipt_costs``, the newest);
2. the item's standard cost in force at the row's event time (``item_costs``: the site's
   own row before an all-sites row);
3. the site's current moving-average cost of the item (stock found is worth what the
   stock there is worth), or the last cost it had;
4. none: the quantity is booked at 0 and counted as ``unvalued``, so a report can say how
   much of the stock it could not value.

Stock moving between sites takes its value with it: the moving average of the sending
site, or (FIFO) the very layers it consumed there, with the day they were first received.

Moving average: receipts add quantity and value; anything going out leaves at the current
average (value / quantity). FIFO: receipts add a layer (quantity, unit cost, received at);
anything going out consumes the oldest layers first.

Negative stock (``[operations] negative_stock = "allow"``). Moving average: what goes out
beyond what is there leaves at the last average; a receipt into a site at or below zero
restarts the average at the receipt's cost. FIFO: what goes out beyond the layers is a
shortfall, valued at the last cost the site had; the next receipts fill the shortfall
before they make new layers.

A reversal is a row like any other: the reversal of a receipt takes the stock out at the
current average (or the oldest layers), not at the reversed receipt's cost.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.schema.core import items, ledger
from server.store.schema.costs import item_costs, receipt_costs
from server.store.sites import site_of

Method = Literal["moving_average", "fifo"]
METHODS: Final[tuple[Method, ...]] = ("moving_average", "fifo")
ZERO: Final = Decimal(0)
STREAM_ROWS: Final = 5000
"""Ledger rows fetched at a time while the books replay the ledger."""


@dataclass(slots=True)
class Layer:
    """FIFO: a quantity received at one unit cost."""

    quantity: int
    unit_cost: Decimal
    received_at: datetime
    kept: str | None = field(default=None, compare=False, repr=False)
    """``"unit cost","received at"`` as a checkpoint keeps them (``book_state.dump_book``),
    made once: a layer is written again at every checkpoint while it stays."""


@dataclass(slots=True)
class Flow:
    """What a site's book of an item saw in the report period; values as
    ``[moving average, FIFO]``."""

    received_quantity: int = 0
    received_value: Decimal = ZERO
    shipped_quantity: int = 0
    shipped_value: list[Decimal] = field(default_factory=lambda: [ZERO, ZERO])
    """Cost of goods shipped (kind ``shipment`` leaving the site to no site)."""
    losses: dict[str, list[Any]] = field(default_factory=dict)
    """Reason -> ``[quantity, moving-average value, FIFO value]`` of what left the site to no
    site other than by shipment (losses, counts that found less, corrections)."""
    demand: dict[datetime, int] = field(default_factory=lambda: defaultdict(int))
    """Quantity shipped per UTC day."""

    def shipped(self, method: Method) -> Decimal:
        return self.shipped_value[METHODS.index(method)]


@dataclass(slots=True)
class Book:
    """One item at one site, valued both ways at once."""

    quantity: int = 0
    average_value: Decimal = ZERO
    """Moving average: the value of ``quantity``."""
    unpacked: deque[Layer] = field(default_factory=deque)
    """FIFO: the layers (read them as ``layers``)."""
    packed: str | None = None
    """FIFO layers as a checkpoint keeps them (JSON: ``[quantity, unit cost, received at]``
    each), unpacked when first used: most books a report reads are not touched again."""
    packed_value: Decimal = ZERO
    """The value of the ``packed`` layers, as kept with them."""
    shortfall: int = 0
    """FIFO: taken out beyond the layers (the stock is negative by this much)."""
    last_cost: Decimal | None = None
    unvalued: int = 0
    """Quantity that came in with no cost known (booked at 0)."""
    opening: tuple[int, Decimal, Decimal] | None = None
    """(quantity, moving-average value, FIFO value) at the start of the report period."""
    flow: Flow = field(default_factory=Flow)

    @property
    def average_cost(self) -> Decimal | None:
        if self.quantity > 0:
            return self.average_value / self.quantity
        return self.last_cost

    @property
    def layers(self) -> deque[Layer]:
        """FIFO: the layers, oldest first."""
        if self.packed is not None:
            self.unpacked.extend(
                Layer(
                    quantity,
                    Decimal(cost),
                    datetime.fromisoformat(received),
                    f'"{cost}","{received}"',
                )
                for quantity, cost, received in json.loads(self.packed)
            )
            self.packed = None
        return self.unpacked

    @property
    def layers_value(self) -> Decimal:
        """FIFO: the value of the layers (the shortfall aside)."""
        if self.packed is not None:
            return self.packed_value
        return sum((layer.unit_cost * layer.quantity for layer in self.unpacked), ZERO)

    @property
    def fifo_value(self) -> Decimal:
        return self.layers_value - (self.last_cost or ZERO) * self.shortfall

    def value(self, method: Method) -> Decimal:
        return self.average_value if method == "moving_average" else self.fifo_value

    def opening_value(self, method: Method) -> Decimal:
        assert self.opening is not None
        return self.opening[1] if method == "moving_average" else self.opening[2]

    def take_in(self, quantity: int, value: Decimal, layers: Sequence[Layer]) -> None:
        """Stock in: ``quantity`` worth ``value`` (moving average), as ``layers`` (FIFO)."""
        if self.quantity <= 0:
            # Restart the average: a deficit is settled at what comes in.
            self.average_value = value / quantity * (self.quantity + quantity)
        else:
            self.average_value += value
        self.quantity += quantity
        self.last_cost = value / quantity
        for layer in layers:
            covered = min(self.shortfall, layer.quantity)
            self.shortfall -= covered
            if layer.quantity > covered:
                self.layers.append(
                    Layer(layer.quantity - covered, layer.unit_cost, layer.received_at, layer.kept)
                )
        if self.quantity == 0:
            self.average_value = ZERO

    def give_out(self, quantity: int, at: datetime) -> tuple[Decimal, list[Layer]]:
        """Stock out: its moving-average value and the FIFO layers it takes (a shortfall
        as a layer at the last cost, received ``at``)."""
        average = (self.average_cost or ZERO) * quantity
        self.quantity -= quantity
        self.average_value = ZERO if self.quantity == 0 else self.average_value - average
        taken: list[Layer] = []
        left = quantity
        while left and self.layers:
            layer = self.layers[0]
            used = min(left, layer.quantity)
            taken.append(Layer(used, layer.unit_cost, layer.received_at, layer.kept))
            layer.quantity -= used
            left -= used
            if layer.quantity == 0:
                self.layers.popleft()
        if left:
            self.shortfall += left
            taken.append(Layer(left, self.last_cost or ZERO, at))
        return average, taken


def layers_value(layers: Iterable[Layer]) -> Decimal:
    return sum((layer.unit_cost * layer.quantity for layer in layers), ZERO)


@dataclass(frozen=True, slots=True)
class CostRow:
    """A ledger row as the books need it."""

    id: int
    event_time: datetime
    item_id: int
    from_location: str | None
    to_location: str | None
    quantity: int
    kind: str
    reason: str | None


class StandardCosts:
    """Standard costs per item, looked up by site and moment."""

    def __init__(self, rows: Iterable[tuple[int, str | None, Decimal, datetime]]) -> None:
        self._costs: dict[tuple[int, str | None], list[tuple[datetime, Decimal]]] = defaultdict(
            list
        )
        for item_id, site, unit_cost, effective_from in rows:
            self._costs[(item_id, site)].append((effective_from, unit_cost))
        for history in self._costs.values():
            history.sort(key=lambda entry: entry[0])

    def at(self, item_id: int, site: str, moment: datetime) -> Decimal | None:
        for key in ((item_id, site), (item_id, None)):
            found: Decimal | None = None
            for effective_from, unit_cost in self._costs.get(key, ()):
                if effective_from > moment:
                    break
                found = unit_cost
            if found is not None:
                return found
        return None


class Books:
    """Every (item, site) book, fed ledger rows in event-time order.

    Args:
        standard: standard costs.
        recorded: the unit cost recorded against a ledger row (id -> cost).
        since: rows at or after it count in each book's ``flow``; the books' state just
            before the first of them is their ``opening``.
    """

    def __init__(
        self,
        standard: StandardCosts,
        recorded: Mapping[int, Decimal],
        since: datetime,
        *,
        demand: bool = True,
    ) -> None:
        self.books: dict[tuple[int, str], Book] = {}
        self._standard = standard
        self._recorded = recorded
        self._since = since
        self._opened = False
        self._demand = demand

    def book(self, item_id: int, site: str) -> Book:
        key = (item_id, site)
        found = self.books.get(key)
        if found is None:
            found = self.books[key] = Book()
            if self._opened:
                found.opening = (0, ZERO, ZERO)
        return found

    def _open(self) -> None:
        for book in self.books.values():
            book.opening = (book.quantity, book.average_value, book.fifo_value)
        self._opened = True

    def close(self) -> None:
        """Call after the last row: if no row reached the period, the books open at the end."""
        if not self._opened:
            self._open()

    def apply(self, row: CostRow) -> None:
        if not self._opened and row.event_time >= self._since:
            self._open()
        source = site_of(row.from_location) if row.from_location is not None else None
        target = site_of(row.to_location) if row.to_location is not None else None
        if source == target:
            return
        if source is None:
            assert target is not None
            into = self.book(row.item_id, target)
            cost = self._cost_in(row, target, into)
            if cost is None:
                into.unvalued += row.quantity
                cost = ZERO
            value = cost * row.quantity
            into.take_in(row.quantity, value, [Layer(row.quantity, cost, row.event_time)])
            if self._opened:
                into.flow.received_quantity += row.quantity
                into.flow.received_value += value
            return
        out_of = self.book(row.item_id, source)
        average, layers = out_of.give_out(row.quantity, row.event_time)
        if target is not None:
            self.book(row.item_id, target).take_in(row.quantity, average, layers)
            return
        if not self._opened:
            return
        flow = out_of.flow
        fifo = layers_value(layers)
        if row.kind == "shipment":
            flow.shipped_quantity += row.quantity
            flow.shipped_value[0] += average
            flow.shipped_value[1] += fifo
            if self._demand:
                day = row.event_time.replace(hour=0, minute=0, second=0, microsecond=0)
                flow.demand[day] += row.quantity
            return
        entry = flow.losses.setdefault(row.reason or row.kind, [0, ZERO, ZERO])
        entry[0] += row.quantity
        entry[1] += average
        entry[2] += fifo

    def _cost_in(self, row: CostRow, site: str, book: Book) -> Decimal | None:
        recorded = self._recorded.get(row.id)
        if recorded is not None:
            return recorded
        standard = self._standard.at(row.item_id, site, row.event_time)
        if standard is not None:
            return standard
        return book.average_cost


def _site(conn: AsyncConnection, column: Any) -> sa.ColumnElement[str]:
    if conn.dialect.name == "postgresql":
        return sa.func.split_part(column, ".", 1)
    dot = sa.func.instr(column, ".")
    return sa.case((dot > 0, sa.func.substr(column, 1, dot - 1)), else_=column)


async def cost_rows(
    conn: AsyncConnection,
    until: datetime,
    item_ids: Sequence[int] | None,
    *,
    since: datetime | None = None,
    upto: int | None = None,
) -> AsyncIterator[list[CostRow]]:
    """The ledger rows that cross a site boundary, before ``until`` (and from ``since``; of
    ids up to ``upto``), in event-time order, in chunks."""
    result = await conn.stream(cost_row_select(conn, until, item_ids, since=since, upto=upto))
    async for chunk in result.partitions(STREAM_ROWS):
        yield [CostRow(*values) for values in chunk]


def cost_row_select(
    conn: AsyncConnection,
    until: datetime,
    item_ids: Sequence[int] | None,
    *,
    since: datetime | None = None,
    upto: int | None = None,
) -> sa.Select[Any]:
    """The SQL of ``cost_rows``."""
    row = ledger.c
    conditions: list[sa.ColumnElement[bool]] = [
        row.event_time < until,
        sa.or_(
            row.from_location.is_(None),
            row.to_location.is_(None),
            _site(conn, row.from_location) != _site(conn, row.to_location),
        ),
    ]
    if item_ids is not None:
        conditions.append(row.item_id.in_(sorted(item_ids)))
    if since is not None:
        conditions.append(row.event_time >= since)
    if upto is not None:
        conditions.append(row.id <= upto)
    return (
        sa.select(
            row.id,
            row.event_time,
            row.item_id,
            row.from_location,
            row.to_location,
            row.quantity,
            row.kind,
            row.reason,
        )
        .where(*conditions)
        .order_by(row.event_time, row.id)
    )


async def standard_costs(conn: AsyncConnection, item_ids: Sequence[int] | None) -> StandardCosts:
    """The standard costs of every item (or of ``item_ids``)."""
    cost = item_costs.c
    query = sa.select(cost.item_id, cost.site, cost.unit_cost, cost.effective_from)
    if item_ids is not None:
        query = query.where(cost.item_id.in_(sorted(item_ids)))
    return StandardCosts((int(a), b, c, d) for a, b, c, d in await conn.execute(query))


async def recorded_costs(
    conn: AsyncConnection,
    until: datetime,
    item_ids: Sequence[int] | None,
    *,
    since: datetime | None = None,
) -> dict[int, Decimal]:
    """The newest cost recorded against each ledger row before ``until`` (from ``since``)."""
    query = (
        sa.select(receipt_costs.c.ledger_id, receipt_costs.c.unit_cost)
        .join(ledger, ledger.c.id == receipt_costs.c.ledger_id)
        .where(ledger.c.event_time < until)
        .order_by(receipt_costs.c.id)
    )
    if since is not None:
        query = query.where(ledger.c.event_time >= since)
    if item_ids is not None:
        query = query.where(ledger.c.item_id.in_(sorted(item_ids)))
    return {int(ledger_id): unit_cost for ledger_id, unit_cost in await conn.execute(query)}


async def load_books(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    item_ids: Sequence[int] | None = None,
) -> Books:
    """The books of every item (or of ``item_ids``) after the ledger rows before ``until``,
    with the flows of the rows from ``since`` on."""
    standard = await standard_costs(conn, item_ids)
    recorded = await recorded_costs(conn, until, item_ids)
    books = Books(standard, recorded, since)
    async for chunk in cost_rows(conn, until, item_ids):
        for row in chunk:
            books.apply(row)
    books.close()
    return books


@dataclass(frozen=True, slots=True)
class ItemInfo:
    id: int
    sku: str
    gtin: str | None
    name: str
    category: str | None


async def item_infos(
    conn: AsyncConnection, sku: str | None = None, category: str | None = None
) -> dict[int, ItemInfo]:
    """The items a report may list (all, or those of a SKU or category)."""
    conditions: list[sa.ColumnElement[bool]] = []
    if sku is not None:
        conditions.append(items.c.sku == sku)
    if category is not None:
        conditions.append(items.c.category == category)
    rows = await conn.execute(
        sa.select(items.c.id, items.c.sku, items.c.gtin, items.c.name, items.c.category).where(
            *conditions
        )
    )
    return {int(row[0]): ItemInfo(int(row[0]), row[1], row[2], row[3], row[4]) for row in rows}
