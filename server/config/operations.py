"""Settings of the edge-driven stock operations and of orders: ``[operations]``, ``[orders]``.

Kept apart from ``server.config.settings`` (which holds them as sections) so that module stays the
map of the file; ``ServerSettings.policy`` turns them into what the
rules take.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from plumbing.settings import Section

SEGMENT_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
"""One part of a dotted location id; a site id is the first part."""
MAX_TRAVEL_S = 30 * 86_400.0
MAX_ROUTES = 10_000
Unexpected = Literal["always", "with_orders", "never"]
NegativeStock = Literal["allow", "refuse"]
MAX_SITE_POLICIES = 10_000
SiteId = Annotated[str, Field(pattern=SEGMENT_PATTERN)]


class TravelSettings(Section):
    """``[[operations.travel]]``: the least time goods need between two sites."""

    sites: list[SiteId] = Field(min_length=2, max_length=2)
    """The two sites (either way round), e.g. ``["wh1", "wh2"]``."""
    min_s: float = Field(ge=0, le=MAX_TRAVEL_S)
    """Seconds; a unit seen at both sites closer together in time is an impossible movement."""

    @field_validator("sites")
    @classmethod
    def _two_sites(cls, value: list[str]) -> list[str]:
        if value[0] == value[1]:
            raise ValueError("a travel time is between two different sites")
        return value


class OperationsSettings(Section):
    """``[operations]``: moves, picks and unit checks from shelf readers and scanners."""

    min_travel_s: float = Field(default=600.0, ge=0, le=MAX_TRAVEL_S)
    """Least time a unit needs between any two sites without a ``[[operations.travel]]``
    entry; a unit seen at two sites closer together in time raises ``impossible_movement``.
    0 turns the check off."""
    travel: list[TravelSettings] = Field(default_factory=list, max_length=MAX_ROUTES)
    pick_zone: str = Field(default="staging", pattern=SEGMENT_PATTERN)
    """Zone of the event's site where picked goods go (``wh1.staging``)."""
    negative_stock: NegativeStock = "allow"
    """What a pick, move, shipment or adjustment that takes more than the books hold at a
    location does: ``allow`` applies it with a ``negative_stock`` alert (the goods did move;
    the alert asks for a count), ``refuse`` dead-letters it (the API answers 409) and tells
    the scanner through the gateway's status."""
    negative_stock_sites: dict[SiteId, NegativeStock] = Field(
        default_factory=dict, max_length=MAX_SITE_POLICIES
    )
    """Per-site overrides of ``negative_stock``: ``[operations.negative_stock_sites]`` with
    ``wh2 = "refuse"``."""

    @field_validator("travel")
    @classmethod
    def _routes_unique(cls, value: list[TravelSettings]) -> list[TravelSettings]:
        seen: set[frozenset[str]] = set()
        for route in value:
            key = frozenset(route.sites)
            if key in seen:
                raise ValueError(f"travel time between {sorted(key)} is given twice")
            seen.add(key)
        return value


class OrdersSettings(Section):
    """``[orders]``: purchase, sales and transfer orders against the edge's movements."""

    unexpected_receipts: Unexpected = "with_orders"
    """When a receipt no open order expects raises ``unexpected_receipt``: ``always``,
    ``never``, or ``with_orders``: only at sites with an open purchase (or inbound
    transfer) order."""
    unexpected_shipments: Unexpected = "with_orders"
    """When a shipment no open order expects raises ``unexpected_shipment``: ``always``,
    ``never``, or ``with_orders``: only at sites with an open sales (or outbound transfer)
    order."""
