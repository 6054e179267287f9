"""The API requests the benchmark sends: kinds of movement-history and stock queries.

Each ``Kind`` names its endpoint and draws random parameters over the generated ledger
(``bench.ledger_gen``): real items, units, aisles, bins and time windows that exist.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from bench import ledger_gen

PAGE: Final = 100
WEEK: Final = timedelta(days=7)

Params = dict[str, str | int]
Query = Callable[[random.Random, ledger_gen.Generated], Params]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _random_item(rng: random.Random, generated: ledger_gen.Generated) -> int:
    """An item with units in the ledger (all of them, unless the ledger is tiny)."""
    return ledger_gen.unit_item(rng.randrange(generated.units))


def _second_page_limit(generated: ledger_gen.Generated) -> int:
    """``PAGE``, or less on a ledger so small that an item has no second page of ``PAGE``."""
    rows_per_item = generated.ledger_rows // min(ledger_gen.ITEMS, generated.units)
    return max(1, min(PAGE, rows_per_item // 2))


def _random_unit(rng: random.Random, generated: ledger_gen.Generated) -> int:
    return rng.randrange(generated.units)


def _movements_by_gtin(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {"gtin": ledger_gen.item_gtin(_random_item(rng, generated)), "limit": PAGE}


def _movements_by_gtin_paged(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    item = _random_item(rng, generated)
    return {"gtin": ledger_gen.item_gtin(item), "limit": _second_page_limit(generated)}


def _movements_by_epc(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    unit = _random_unit(rng, generated)
    return {"epc": ledger_gen.unit_epc(ledger_gen.unit_item(unit), unit), "limit": PAGE}


def _movements_by_aisle(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    site = ledger_gen.site_id(rng.randrange(ledger_gen.SITES))
    return {"location": f"{site}.a{rng.randrange(ledger_gen.AISLES) + 1:02d}", "limit": PAGE}


def _movements_site_week(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    span = (generated.last_time - generated.first_time - WEEK).total_seconds()
    since = generated.first_time + timedelta(seconds=rng.uniform(0, max(0.0, span)))
    site = ledger_gen.site_id(rng.randrange(ledger_gen.SITES))
    return {"location": site, "since": _iso(since), "until": _iso(since + WEEK), "limit": PAGE}


def _stock_all(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {"limit": PAGE}


def _stock_by_site(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {"location": ledger_gen.site_id(rng.randrange(ledger_gen.SITES)), "limit": PAGE}


def _stock_by_bin(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    site = rng.randrange(ledger_gen.SITES)
    return {
        "location": ledger_gen.bin_id(site, rng.randrange(ledger_gen.AISLES * ledger_gen.BINS)),
        "limit": PAGE,
    }


def _stock_by_gtin(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {"gtin": ledger_gen.item_gtin(_random_item(rng, generated)), "limit": PAGE}


def _stock_by_sku(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {"sku": ledger_gen.item_sku(_random_item(rng, generated)), "limit": PAGE}


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of request: its endpoint, a description and how to draw its parameters."""

    name: str
    path: str
    text: str
    query: Query
    second_page: bool = False
    """Time the page after the first one (following ``next_cursor``), not the first."""

    @property
    def key(self) -> str:
        """Unique among all kinds (names repeat across endpoints)."""
        return f"{self.path} {self.name}"


MOVEMENT_KINDS: Final = (
    Kind("gtin", "/api/v1/movements", "an item's history (gtin=)", _movements_by_gtin),
    Kind(
        "gtin_page2",
        "/api/v1/movements",
        "its second page (cursor=)",
        _movements_by_gtin_paged,
        second_page=True,
    ),
    Kind("epc", "/api/v1/movements", "a unit's history (epc=)", _movements_by_epc),
    Kind("aisle", "/api/v1/movements", "an aisle subtree (location=wh2.a07)", _movements_by_aisle),
    Kind(
        "site_week",
        "/api/v1/movements",
        "a site over one week (location=, since=, until=)",
        _movements_site_week,
    ),
)
STOCK_KINDS: Final = (
    Kind("all", "/api/v1/stock", "first page, no filter", _stock_all),
    Kind("site", "/api/v1/stock", "a site subtree (location=wh3)", _stock_by_site),
    Kind("bin", "/api/v1/stock", "one bin (location=wh3.a07.b04)", _stock_by_bin),
    Kind("gtin", "/api/v1/stock", "one item (gtin=)", _stock_by_gtin),
    Kind("sku", "/api/v1/stock", "one item (sku=)", _stock_by_sku),
)


QUARTER: Final = timedelta(days=90)


def _window(rng: random.Random, generated: ledger_gen.Generated, span: timedelta) -> Params:
    room = (generated.last_time - generated.first_time - span).total_seconds()
    since = generated.first_time + timedelta(seconds=rng.uniform(0, max(0.0, room)))
    return {"since": _iso(since), "until": _iso(since + span)}


def _dock_hours(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    site = ledger_gen.site_id(rng.randrange(ledger_gen.SITES))
    return {
        "bucket": "hour",
        "read_point": f"{site}.dock.1",
        "kind": "receipt",
        "side": "in",
        **_window(rng, generated, WEEK),
    }


def _site_location_hours(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    site = ledger_gen.site_id(rng.randrange(ledger_gen.SITES))
    return {
        "bucket": "hour",
        "location": site,
        "group_by": "location,kind",
        **_window(rng, generated, WEEK),
    }


def _sites_days(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {"bucket": "day", "group_by": "site,kind", **_window(rng, generated, QUARTER)}


def _item_days(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {
        "bucket": "day",
        "sku": ledger_gen.item_sku(_random_item(rng, generated)),
        "group_by": "site",
        **_window(rng, generated, QUARTER),
    }


def _item_stock_days(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {
        "sku": ledger_gen.item_sku(_random_item(rng, generated)),
        **_window(rng, generated, QUARTER),
    }


HISTORY_KINDS: Final = (
    Kind(
        "dock_hours",
        "/api/v1/history/movements",
        "receipts per hour at a dock over a week (bucket=hour, read_point=, kind=, side=)",
        _dock_hours,
    ),
    Kind(
        "site_location_hours",
        "/api/v1/history/movements",
        "a site's week per hour by location and kind (location=wh2, group_by=location,kind)",
        _site_location_hours,
    ),
    Kind(
        "sites_days",
        "/api/v1/history/movements",
        "90 days per day by site and kind (bucket=day, group_by=site,kind)",
        _sites_days,
    ),
    Kind(
        "item_days",
        "/api/v1/history/movements",
        "an item's 90 days per day by site (sku=, group_by=site)",
        _item_days,
    ),
    Kind(
        "item_stock",
        "/api/v1/history/stock",
        "an item's daily closing stock per site over 90 days (sku=)",
        _item_stock_days,
    ),
)


def _nothing(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {}


FLOOR_KIND: Final = Kind(
    "healthz", "/healthz", "GET /healthz: the HTTP round trip with (almost) no work", _nothing
)
"""Measured beside the others: the latency no API request can go below on this server."""


def _as_of(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    span = (generated.last_time - generated.first_time).total_seconds()
    return {"as_of": _iso(generated.first_time + timedelta(seconds=rng.uniform(0, span)))}


def _stock_value(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return _as_of(rng, generated)


def _stock_value_fifo_category(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {**_as_of(rng, generated), "method": "fifo", "group_by": "category"}


def _stock_value_location(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {**_as_of(rng, generated), "group_by": "location"}


def _turnover(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return _window(rng, generated, QUARTER)


def _aging(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return _as_of(rng, generated)


def _abc_xyz(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return _window(rng, generated, QUARTER)


def _losses(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {**_window(rng, generated, QUARTER), "group_by": "reason,site,sku"}


def _door_day(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    site = ledger_gen.site_id(rng.randrange(ledger_gen.SITES))
    return {"read_point": f"{site}.dock.1", **_window(rng, generated, timedelta(days=1))}


def _dead_stock(rng: random.Random, generated: ledger_gen.Generated) -> Params:
    return {**_as_of(rng, generated), "days": 90}


REPORT_KINDS: Final = (
    Kind(
        "stock_value",
        "/api/v1/reports/stock-value",
        "stock value per site and item as of a moment (moving average; the whole ledger up to it)",
        _stock_value,
    ),
    Kind(
        "stock_value_fifo_category",
        "/api/v1/reports/stock-value",
        "the same, FIFO, per site and category",
        _stock_value_fifo_category,
    ),
    Kind(
        "stock_value_location",
        "/api/v1/reports/stock-value",
        "the same per location and item (what each location held, at its site's unit cost)",
        _stock_value_location,
    ),
    Kind("turnover", "/api/v1/reports/turnover", "turnover over 90 days", _turnover),
    Kind("aging", "/api/v1/reports/aging", "aging as of a moment", _aging),
    Kind("abc_xyz", "/api/v1/reports/abc-xyz", "ABC/XYZ over 90 days", _abc_xyz),
    Kind("losses", "/api/v1/reports/losses", "losses over 90 days by reason, site, item", _losses),
    Kind(
        "door_day",
        "/api/v1/reports/door-throughput",
        "a dock's throughput per hour over a day",
        _door_day,
    ),
    Kind("dead_stock", "/api/v1/reports/dead-stock", "dead stock, 90 days", _dead_stock),
)
"""Reports; all but the door's and dead stock's replay the ledger up to their end date."""
