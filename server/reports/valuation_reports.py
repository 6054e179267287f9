"""Reports on the books (``server.reports.valuation``): stock value, turnover, aging, losses
(ABC/XYZ is ``server.reports.abc_xyz``), each computed for the items of a ``Scope``, which
may be one shard of them (``server.reports.shards``).

Every report reads the books of the items it covers as of its start and end
(``server.reports.book_reads``: the books kept at the checkpoint before each, and the ledger
rows after it), so its cost grows with the books and the rows since a checkpoint, not with
the ledger; see the README for what each figure means. A key restricted to sites sees
only the rows of its sites (the books themselves are kept over every site, since goods
moving between sites take their value with them).

Amounts are ``Decimal``; the API rounds them for JSON and CSV (``money``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from server.reports.book_reads import books_at, period_books
from server.reports.location_snapshots import Held
from server.reports.locations import location_quantities
from server.reports.valuation import ZERO, Book, Books, ItemInfo, Method, item_infos
from server.store.sites import site_of

CENT: Final = Decimal("0.01")
UNIT_COST_PLACES: Final = Decimal("0.000001")
DEFAULT_AGE_BUCKETS: Final = (30, 60, 90, 180)
StockValueGroup = Literal["item", "location", "category"]
DemandPeriod = Literal["day", "week"]
LossGroup = Literal["reason", "site", "sku"]
LOSS_GROUPS: Final[tuple[LossGroup, ...]] = ("reason", "site", "sku")


def money(value: Decimal) -> float:
    """An amount rounded to cents, for JSON and CSV."""
    return float(value.quantize(CENT, rounding=ROUND_HALF_EVEN))


def unit_money(value: Decimal | None) -> float | None:
    """A unit cost rounded to millionths."""
    if value is None:
        return None
    return float(value.quantize(UNIT_COST_PLACES, rounding=ROUND_HALF_EVEN))


def shard_of(item_id: int, count: int) -> int:
    """Which of ``count`` shards an item is in: its id's multiplicative hash (Fibonacci
    hashing), so the shards get a like share of any catalogue, however its ids were given
    out (``item_id % count`` gave the benchmark's aging report 7,200 rows in one shard and
    10,000 in the other)."""
    return ((item_id * 0x9E3779B97F4A7C15) % 2**64 >> 32) % count


@dataclass(frozen=True, slots=True)
class Scope:
    """Which books a report lists."""

    site: str | None = None
    sku: str | None = None
    category: str | None = None
    sites: frozenset[str] = frozenset()
    """The key's sites (empty: every site)."""
    shard: tuple[int, int] | None = None
    """``(index, count)``: only the items ``shard_of`` puts in shard ``index`` of ``count``
    (``server.reports.shards``)."""

    def allows(self, site: str) -> bool:
        if self.site is not None and site != self.site:
            return False
        return not self.sites or site in self.sites


async def scope_items(
    conn: AsyncConnection, scope: Scope
) -> tuple[dict[int, ItemInfo], list[int] | None]:
    infos = await item_infos(conn, scope.sku, scope.category)
    narrowed = scope.sku is not None or scope.category is not None
    if scope.shard is not None:
        index, count = scope.shard
        infos = {
            item_id: info for item_id, info in infos.items() if shard_of(item_id, count) == index
        }
        narrowed = True
    return infos, sorted(infos) if narrowed else None


async def _books_at(
    conn: AsyncConnection, scope: Scope, moment: datetime
) -> tuple[Books, dict[int, ItemInfo]]:
    """The books as of ``moment`` (``server.reports.book_reads``: the books kept at the
    checkpoint before it, and the ledger rows after that)."""
    infos, item_ids = await scope_items(conn, scope)
    return await books_at(conn, moment, item_ids), infos


async def _books(
    conn: AsyncConnection,
    scope: Scope,
    since: datetime,
    until: datetime,
    side: AsyncConnection | None = None,
) -> tuple[Books, dict[int, ItemInfo]]:
    """The books at ``until`` with their openings at ``since`` and their flows between
    (``side``: a second read connection, see ``period_books``)."""
    infos, item_ids = await scope_items(conn, scope)
    return await period_books(conn, since, until, item_ids, side), infos


def _listed(
    books: Books, infos: dict[int, ItemInfo], scope: Scope
) -> Iterable[tuple[str, ItemInfo, Book]]:
    for (item_id, site), book in sorted(
        books.books.items(), key=lambda entry: (entry[0][1], infos[entry[0][0]].sku)
    ):
        if item_id in infos and scope.allows(site):
            yield site, infos[item_id], book


# --- stock value ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StockValueRow:
    site: str
    location: str | None
    sku: str | None
    name: str | None
    category: str | None
    on_hand: int
    unit_cost: Decimal | None
    value: Decimal
    unvalued: int
    """Of the quantity received there, how much came in with no cost known (valued at 0)."""


async def stock_value(
    conn: AsyncConnection, as_of: datetime, method: Method, group_by: StockValueGroup, scope: Scope
) -> list[StockValueRow]:
    """On hand and its value as of ``as_of``, per site and item (``item``), per location and
    item (``location``: the site's unit cost times what the location holds), or per site
    and category (``category``). Books with nothing on hand and no value are left out."""
    if group_by == "location":
        held, infos = await location_holdings(conn, as_of, scope)
        return located(held, infos, await unit_costs(conn, as_of, method, scope), scope)
    books, infos = await _books_at(conn, scope, as_of)
    listed = [
        (site, info, book)
        for site, info, book in _listed(books, infos, scope)
        if book.quantity != 0 or book.value(method) != ZERO
    ]
    if group_by == "item":
        return [
            StockValueRow(
                site=site,
                location=None,
                sku=info.sku,
                name=info.name,
                category=info.category,
                on_hand=book.quantity,
                unit_cost=book.value(method) / book.quantity if book.quantity > 0 else None,
                value=book.value(method),
                unvalued=book.unvalued,
            )
            for site, info, book in listed
        ]
    totals: dict[tuple[str, str | None], list[Any]] = {}
    for site, info, book in listed:
        entry = totals.setdefault((site, info.category), [0, ZERO, 0])
        entry[0] += book.quantity
        entry[1] += book.value(method)
        entry[2] += book.unvalued
    return [
        StockValueRow(site, None, None, None, category, quantity, None, value, unvalued)
        for (site, category), (quantity, value, unvalued) in sorted(
            totals.items(), key=lambda entry: (entry[0][0], entry[0][1] or "")
        )
    ]


@dataclass(frozen=True, slots=True)
class UnitCost:
    """A site's unit cost of an item as of a moment: value / on hand (``unit_costs``)."""

    item_id: int
    site: str
    unit_cost: Decimal


async def unit_costs(
    conn: AsyncConnection, as_of: datetime, method: Method, scope: Scope
) -> list[UnitCost]:
    """The unit cost of every book of the items in scope with stock on hand as of
    ``as_of``. Per shard of the items when the report is split."""
    books, _ = await _books_at(conn, scope, as_of)
    return [
        UnitCost(item_id, site, book.value(method) / book.quantity)
        for (item_id, site), book in books.books.items()
        if book.quantity > 0
    ]


async def location_holdings(
    conn: AsyncConnection, as_of: datetime, scope: Scope
) -> tuple[Held, dict[int, ItemInfo]]:
    """What each location held of the items in scope as of ``as_of``
    (``locations.location_quantities``, one sum for every item in scope: a list of half the
    items costs the ledger an index range per item, two to four times the time range of
    every item's rows), and the items' infos."""
    infos, item_ids = await scope_items(conn, scope)
    return await location_quantities(conn, as_of, item_ids), infos


def located(
    held: Held, infos: dict[int, ItemInfo], costs: Iterable[UnitCost], scope: Scope
) -> list[StockValueRow]:
    """Stock value per location and item: what each location held (``location_holdings``)
    at its site's unit cost (``unit_costs``; none when the site holds none in its books)."""
    unit_of = {(cost.item_id, cost.site): cost.unit_cost for cost in costs}
    rows: list[StockValueRow] = []
    for (item_id, location), quantity in held.items():
        site = site_of(location)
        known = infos.get(item_id)
        if quantity == 0 or known is None or not scope.allows(site):
            continue
        unit = unit_of.get((item_id, site))
        rows.append(
            StockValueRow(
                site=site,
                location=location,
                sku=known.sku,
                name=known.name,
                category=known.category,
                on_hand=quantity,
                unit_cost=unit,
                value=(unit or ZERO) * quantity,
                unvalued=0,
            )
        )
    rows.sort(key=lambda row: (row.site, row.location or "", row.sku or ""))
    return rows


# --- turnover -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnoverRow:
    site: str
    sku: str
    name: str
    opening_quantity: int
    opening_value: Decimal
    closing_quantity: int
    closing_value: Decimal
    received_quantity: int
    shipped_quantity: int
    cost_of_goods_shipped: Decimal
    turnover: float | None
    """Cost of goods shipped / the mean of opening and closing value (None: no value held)."""
    days_of_supply: float | None
    """Closing quantity / quantity shipped per day over the period (None: nothing shipped)."""


async def turnover(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    method: Method,
    scope: Scope,
    side: AsyncConnection | None = None,
) -> list[TurnoverRow]:
    """Per site and item over ``since``..``until``: stock at both ends, what came in and
    was shipped, and the cost of goods shipped; turnover and days of supply from them
    (``side``: a second read connection, see ``period_books``)."""
    books, infos = await _books(conn, scope, since, until, side)
    days = (until - since).total_seconds() / 86400
    rows: list[TurnoverRow] = []
    for site, info, book in _listed(books, infos, scope):
        assert book.opening is not None
        flow = book.flow
        opening_value = book.opening_value(method)
        closing_value = book.value(method)
        cogs = flow.shipped(method)
        mean = (opening_value + closing_value) / 2
        rows.append(
            TurnoverRow(
                site=site,
                sku=info.sku,
                name=info.name,
                opening_quantity=book.opening[0],
                opening_value=opening_value,
                closing_quantity=book.quantity,
                closing_value=closing_value,
                received_quantity=flow.received_quantity,
                shipped_quantity=flow.shipped_quantity,
                cost_of_goods_shipped=cogs,
                turnover=round(float(cogs / mean), 4) if mean > 0 else None,
                days_of_supply=(
                    round(book.quantity / (flow.shipped_quantity / days), 2)
                    if flow.shipped_quantity
                    else None
                ),
            )
        )
    return rows


# --- aging ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgingRow:
    site: str
    sku: str
    name: str
    on_hand: int
    value: Decimal
    buckets: list[tuple[str, int, Decimal]]
    """(label, quantity, value) per age bucket, youngest first."""
    oldest_received: datetime | None


def bucket_labels(limits: Sequence[int]) -> list[str]:
    """``[30, 60]`` -> ``["0-30", "31-60", "61+"]`` (days on hand)."""
    labels, low = [], 0
    for limit in limits:
        labels.append(f"{low}-{limit}")
        low = limit + 1
    labels.append(f"{low}+")
    return labels


async def aging(
    conn: AsyncConnection, as_of: datetime, limits: Sequence[int], scope: Scope
) -> list[AgingRow]:
    """How long the stock on hand at ``as_of`` has been on hand, from its FIFO layers: per
    site and item, quantity and value in age buckets (whole days since the layer was
    received; goods moved between sites keep their first receipt's date)."""
    books, infos = await _books_at(conn, scope, as_of)
    labels = bucket_labels(limits)
    rows: list[AgingRow] = []
    for site, info, book in _listed(books, infos, scope):
        layers = book.layers
        if not layers:
            continue
        quantities = [0 for _ in labels]
        values = [ZERO for _ in labels]
        oldest = layers[0].received_at
        for layer in layers:
            # The first bucket whose limit the age does not pass (limits increase).
            index = bisect_left(limits, (as_of - layer.received_at).days)
            quantities[index] += layer.quantity
            values[index] += layer.unit_cost * layer.quantity
            oldest = min(oldest, layer.received_at)
        rows.append(
            AgingRow(
                site=site,
                sku=info.sku,
                name=info.name,
                on_hand=sum(quantities),
                value=sum(values, ZERO),
                buckets=list(zip(labels, quantities, values, strict=True)),
                oldest_received=oldest,
            )
        )
    return rows


# --- losses ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LossRow:
    reason: str | None
    site: str | None
    sku: str | None
    quantity: int
    value: Decimal


async def losses(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    method: Method,
    group_by: Sequence[LossGroup],
    scope: Scope,
    side: AsyncConnection | None = None,
) -> list[LossRow]:
    """Stock that left a site to no site other than by shipment over ``since``..``until``
    (losses: lost, stolen, damaged, expired; counts that found less: ``cycle_counting``,
    shelf ``shrinkage``; negative ``correction``), quantity and value, per ``group_by``
    (``side``: a second read connection, see ``period_books``)."""
    books, infos = await _books(conn, scope, since, until, side)
    index = 1 if method == "moving_average" else 2
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for site, info, book in _listed(books, infos, scope):
        for reason, entry in book.flow.losses.items():
            values = {"reason": reason, "site": site, "sku": info.sku}
            key = tuple(values[name] for name in group_by)
            total = sums.setdefault(key, [0, ZERO])
            total[0] += entry[0]
            total[1] += entry[index]
    rows = []
    for key, (quantity, value) in sums.items():
        values = dict(zip(group_by, key, strict=True))
        rows.append(
            LossRow(values.get("reason"), values.get("site"), values.get("sku"), quantity, value)
        )
    rows.sort(key=lambda row: (-row.value, row.reason or "", row.site or "", row.sku or ""))
    return rows
