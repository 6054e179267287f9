"""The knobs the stock rules take from the server config, as one frozen value.

``Policy`` is built once from ``[operations]`` and ``[orders]`` (``ServerSettings.policy``)
and handed to ``server.rules.plan``; the rules never read config themselves.

- **Sites.** A location's site is the first part of its dotted id (``wh1`` of
  ``wh1.aisle.3``). An event happens at its read point's site: the read point's ``site``
  when configured, else the site of its ``inbound_location``.
- **Travel time.** ``min_travel(a, b)`` is the least time a unit needs from site ``a`` to
  site ``b``: the ``[[operations.travel]]`` entry naming both sites, else
  ``[operations] min_travel_s`` (default 600 s). A unit seen at two sites closer together
  in time than that raises ``impossible_movement``. 0 turns the check off.
- **Picks** move goods to the zone ``pick_zone`` of the event's site (``wh1.staging``).
- **Unexpected goods.** ``unexpected_receipt`` and ``unexpected_shipment`` are raised
  (``[orders] unexpected_receipts`` / ``unexpected_shipments``) ``always``, ``never``, or
  ``with_orders`` (the default): only at a site that keeps orders for that direction, that
  is, while it has an open purchase order receiving there or transfer order going there
  (receipts), or an open sales or transfer order shipping from there (shipments). A site
  that does not use orders is not flooded with alerts.
- **Negative stock.** ``negative_stock_at(site)``: ``[operations.negative_stock_sites]``
  entry of the site, else ``[operations] negative_stock`` (``allow``); see
  ``server.rules.negative``.
- **Transit.** Goods shipped on a transfer order sit at ``transit.<order number>`` (the
  reserved site ``transit``) until they are received at the destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from server.rules.points import ReadPoint

NegativeStock = Literal["allow", "refuse"]
Unexpected = Literal["always", "with_orders", "never"]
"""When goods no open order expects raise an alert: always, only at sites that keep orders
of that direction (the default), or never."""
DEFAULT_MIN_TRAVEL_S = 600.0
DEFAULT_PICK_ZONE = "staging"
TRANSIT_SITE = "transit"
"""Reserved site id under which goods on the road are kept (one location per order)."""


def site_of(location: str) -> str:
    """``wh1.aisle.3`` -> ``wh1``."""
    return location.split(".", 1)[0]


def event_site(read_point: ReadPoint) -> str:
    """The site where events at ``read_point`` happen."""
    return read_point.site or site_of(read_point.inbound_location)


def transit_location(order_number: str) -> str:
    """Where goods shipped on transfer order ``order_number`` are while on the road."""
    return f"{TRANSIT_SITE}.{order_number}"


def transit_order(location: str | None) -> str | None:
    """The transfer order number of a transit location; None for any other location."""
    if location is None:
        return None
    site, _, rest = location.partition(".")
    return rest if site == TRANSIT_SITE and rest and "." not in rest else None


@dataclass(frozen=True, slots=True)
class Policy:
    """What the rules need from the config (see the module docstring)."""

    min_travel_s: float = DEFAULT_MIN_TRAVEL_S
    routes: Mapping[frozenset[str], float] = field(default_factory=dict)
    """Minimum travel seconds between two named sites, overriding ``min_travel_s``."""
    pick_zone: str = DEFAULT_PICK_ZONE
    unexpected_receipts: Unexpected = "with_orders"
    unexpected_shipments: Unexpected = "with_orders"
    negative_stock: NegativeStock = "allow"
    negative_stock_sites: Mapping[str, NegativeStock] = field(default_factory=dict)

    def min_travel(self, a: str, b: str) -> timedelta:
        """Least time a unit needs from site ``a`` to site ``b`` (zero within one site)."""
        if a == b:
            return timedelta(0)
        return timedelta(seconds=self.routes.get(frozenset((a, b)), self.min_travel_s))

    def negative_stock_at(self, site: str) -> NegativeStock:
        """Whether taking a balance at ``site`` below zero is allowed or refused."""
        return self.negative_stock_sites.get(site, self.negative_stock)

    @property
    def refuses_anywhere(self) -> bool:
        """Some site refuses negative stock (balances are then read with a row lock)."""
        return self.negative_stock == "refuse" or "refuse" in self.negative_stock_sites.values()

    def pick_location(self, site: str) -> str:
        """Where a pick at ``site`` puts the goods."""
        return f"{site}.{self.pick_zone}"


DEFAULT_POLICY = Policy()
