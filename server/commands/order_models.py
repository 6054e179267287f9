"""What the order routes take and give: the request bodies and the views of orders.

The commands that change orders are in ``server.commands.orders`` (and the lines' in
``server.commands.order_lines``), the reads in ``server.queries.orders``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator

from server.commands.masterdata import NAME_PATTERN, Gtin, LocationId, Sku, Strict
from server.rules.model import OrderKind
from server.rules.orders import OrderStatus
from server.store.schema.orders import MAX_ORDER_NOTE, MAX_PARTNER, ORDER_NUMBER_PATTERN

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


__all__ = [
    "MAX_LINES",
    "LineIn",
    "LineQuantity",
    "OrderChanges",
    "OrderIn",
    "OrderLineView",
    "OrderSummary",
    "OrderView",
    "StatusChange",
    "TransferOrderIn",
]
