"""Movements and stock by location: the planned queries return what a plain filter would.

``server.queries.movements.movements`` answers a location filter in one of two shapes (a branch per
location of a small subtree, or a walk of the time index for a large one). Both must give
the rows a brute-force filter gives, in order, page after page, with the other filters
combined, on both databases.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import pytest
import sqlalchemy as sa
from server_helpers import BASE_TIME

from server.queries.movements import MovementQuery, movements
from server.queries.stock import StockQuery, stock
from server.queries.subtree import SUBTREE_BRANCH_LOCATIONS
from server.store.database import Store
from server.store.schema.core import balances, items, ledger, locations
from server.store.schema.orders import order_positions

SMALL_AISLE = [f"wh1.a01.b{n:02d}" for n in range(1, 6)]
LARGE_AISLE = [f"wh1.a02.b{n:02d}" for n in range(1, SUBTREE_BRANCH_LOCATIONS + 9)]
PLACES = [
    "wh1",
    "wh1.a01",
    *SMALL_AISLE,
    "wh1.a02",
    *LARGE_AISLE,
    "wh1.receiving",
    "wh10",
    "wh10.receiving",
    "wh2",
    "wh2.x",
]
ROWS = 400


def parent(location: str) -> str | None:
    return location.rpartition(".")[0] or None


def in_subtree(location: str | None, root: str) -> bool:
    return location is not None and (location == root or location.startswith(f"{root}."))


@pytest.fixture
async def history(store: Store) -> list[dict[str, object]]:
    rng = random.Random(7)
    rows: list[dict[str, object]] = []
    async with store.begin("test data") as conn:
        await conn.execute(
            locations.insert(),
            [
                {"id": place, "parent": parent(place), "kind": "bin", "created_at": BASE_TIME}
                for place in sorted(PLACES, key=lambda p: p.count("."))
            ],
        )
        await conn.execute(
            items.insert(),
            [
                {"sku": sku, "gtin": gtin, "name": sku, "reviewed": True, "created_at": BASE_TIME}
                for sku, gtin in (("soap", "80614141123458"), ("tea", "10614141123459"))
            ],
        )
        item_ids = {sku: id_ for sku, id_ in await conn.execute(sa.select(items.c.sku, items.c.id))}
        for number in range(ROWS):
            source = rng.choice([None, *PLACES])
            target = rng.choice([place for place in PLACES if place != source])
            sku = rng.choice(["soap", "tea"])
            row = {
                # Few distinct times, so ties are broken by id across pages.
                "event_time": BASE_TIME + timedelta(minutes=rng.randrange(60)),
                "recorded_at": BASE_TIME,
                "item_id": item_ids[sku],
                "epc": f"urn:epc:id:sgtin:0614141.812345.{number % 50}",
                "from_location": source,
                "to_location": target,
                "quantity": 1,
                "kind": "transfer",
                "actor": "test",
            }
            row["id"] = (await conn.execute(ledger.insert().values(row))).inserted_primary_key[0]
            rows.append(row | {"sku": sku})
    return rows


def expected(rows: list[dict[str, object]], query: MovementQuery) -> list[object]:
    assert query.location is not None
    matching = [
        row
        for row in rows
        if (
            in_subtree(row["from_location"], query.location)  # type: ignore[arg-type]
            or in_subtree(row["to_location"], query.location)  # type: ignore[arg-type]
        )
        and (query.sku is None or row["sku"] == query.sku)
        and (query.epc is None or row["epc"] == query.epc)
        and (query.since is None or row["event_time"] >= query.since)  # type: ignore[operator]
        and (
            not query.sites
            or any(
                in_subtree(row[side], site)  # type: ignore[arg-type]
                for side in ("from_location", "to_location")
                for site in query.sites
            )
        )
    ]
    matching.sort(key=lambda row: (row["event_time"], row["id"]), reverse=True)
    return [row["id"] for row in matching]


async def every_page(store: Store, query: MovementQuery) -> list[int]:
    found: list[int] = []
    for _ in range(ROWS + 1):
        async with store.read("test") as conn:
            page, more = await movements(conn, query)
        found.extend(row.id for row in page)
        if not more:
            return found
        last = page[-1]
        query = dataclasses.replace(query, after=(last.event_time, last.id))
    raise AssertionError("pages never ended")


@pytest.mark.parametrize(
    "location",
    [
        "wh1.a01",  # a small subtree: one branch per location and side
        "wh1.a01.b03",  # one location
        "wh1.a02",  # more locations than branches: the time index walk
        "wh1",  # a site
        "wh1.receiving",
        "wh2.x",
        "wh1.a0",  # a prefix of ids that is not a location: matches nothing
        "wh3",  # no such location
    ],
)
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"sku": "tea"},
        {"epc": "urn:epc:id:sgtin:0614141.812345.7"},
        {"since": BASE_TIME + timedelta(minutes=30)},
        {"sites": frozenset({"wh2"})},
    ],
    ids=["plain", "sku", "epc", "since", "sites"],
)
async def test_location_history_pages_match_a_plain_filter(
    store: Store, history: list[dict[str, object]], location: str, extra: dict[str, object]
) -> None:
    query = MovementQuery(location=location, limit=7, **extra)  # type: ignore[arg-type]
    want = expected(history, query)
    assert await every_page(store, query) == want
    if location in ("wh1.a01", "wh1.a02", "wh1") and not extra:
        assert len(want) > 30, "the data exercise this plan over several pages"


@pytest.fixture
async def on_hand(store: Store, history: list[dict[str, object]]) -> dict[tuple[str, str], int]:
    """Balances of several items at every place (some zero), beside the history; order
    positions on some of them (also where nothing is on hand) and on some places with no
    balance row, keyed in ``ORDERED``."""
    rng = random.Random(11)
    skus = [f"sku-{n:02d}" for n in range(12)]
    figures: dict[tuple[str, str], int] = {}
    async with store.begin("test balances") as conn:
        await conn.execute(
            items.insert(),
            [
                {"sku": sku, "gtin": None, "name": sku, "reviewed": True, "created_at": BASE_TIME}
                for sku in skus
            ],
        )
        item_ids = {sku: id_ for sku, id_ in await conn.execute(sa.select(items.c.sku, items.c.id))}
        rows = []
        for sku in skus:
            for place in PLACES:
                if rng.random() < 0.7:
                    figures[(sku, place)] = rng.choice([0, 1, 5, 12])
                    rows.append(
                        {
                            "item_id": item_ids[sku],
                            "location_id": place,
                            "on_hand": figures[(sku, place)],
                        }
                    )
        await conn.execute(balances.insert(), rows)
        positions = []
        ORDERED.clear()
        for sku in skus:
            for place in PLACES:
                if rng.random() < 0.25:
                    on_order, allocated, in_transit = (rng.choice([0, 0, 3]) for _ in range(3))
                    ORDERED[(sku, place)] = on_order + allocated + in_transit
                    positions.append(
                        {
                            "item_id": item_ids[sku],
                            "location_id": place,
                            "on_order": on_order,
                            "allocated": allocated,
                            "in_transit": in_transit,
                        }
                    )
        await conn.execute(order_positions.insert(), positions)
    return figures


ORDERED: dict[tuple[str, str], int] = {}
"""Open order figures (any nonzero means an order names the place) by (sku, place)."""


@pytest.mark.parametrize("location", ["wh1.a01", "wh1.a01.b03", "wh1.a02", "wh1", "wh2", "wh3"])
@pytest.mark.parametrize("sites", [frozenset(), frozenset({"wh1"})], ids=["any", "wh1-key"])
@pytest.mark.parametrize("include_zero", [False, True], ids=["held", "all"])
async def test_stock_by_location_pages_match_a_plain_filter(
    store: Store,
    on_hand: dict[tuple[str, str], int],
    location: str,
    sites: frozenset[str],
    include_zero: bool,
) -> None:
    # A balance row is listed while something is on hand or an open order names it.
    want = sorted(
        (sku, place, figure)
        for (sku, place), figure in on_hand.items()
        if (include_zero or figure != 0 or ORDERED.get((sku, place), 0) != 0)
        and in_subtree(place, location)
        and (not sites or any(in_subtree(place, site) for site in sites))
    )
    got: list[tuple[str, str, int]] = []
    offset = 0
    for _ in range(len(on_hand) + 1):
        async with store.read("test") as conn:
            page, total = await stock(
                conn,
                StockQuery(
                    location=location,
                    sites=sites,
                    include_zero=include_zero,
                    limit=9,
                    offset=offset,
                ),
            )
        assert total == len(want)
        got.extend((row.sku, row.location, row.on_hand) for row in page)
        offset += len(page)
        if not page:
            break
    assert got == want
    if location in ("wh1.a01", "wh1.a02"):
        assert len(want) > 18, "the data span several pages"
    if location == "wh1" and not include_zero:
        # The data hold what the count's second part is for: nothing on hand, on order.
        assert any(on_hand[(sku, place)] == 0 for sku, place, _ in want)
