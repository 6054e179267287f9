"""``/api/v1/history/movements`` and ``/history/stock`` against brute-force sums of the ledger,
on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import csv
import io
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from server_helpers import (
    BASE_TIME,
    GTIN_A,
    GTIN_B,
    VIEWER_KEY,
    WH2_VIEWER_KEY,
    Batches,
    Probe,
    bearer,
    make_scoped_settings,
    sgtin,
)

from server.api.factory import create_app
from server.config.history import HistorySettings
from server.config.settings import ServerSettings
from server.history.follow import LedgerFollower
from server.history.rollups import RollupSink
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store

VIEWER = bearer(VIEWER_KEY)
WINDOW = {
    "since": (BASE_TIME - timedelta(days=2)).isoformat(),
    "until": (BASE_TIME + timedelta(days=3)).isoformat(),
}


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_scoped_settings(database_url)


@pytest.fixture
async def client(
    store: Store, settings: ServerSettings, metrics: Metrics
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, settings, metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        yield http


@pytest.fixture
async def history(store: Store, ingestor: Ingestor) -> None:
    """Units and quantities received and shipped at wh1 and wh2 over two days, followed."""
    wh1 = Batches()
    wh2 = Batches(site="wh2", gateway="gw2")
    events1, events2 = [], []
    for n in range(24):
        at = BASE_TIME + timedelta(minutes=83 * n)
        events1.append(
            wh1.event(epc=sgtin(n), at=at, read_point="wh1.dock.1" if n % 3 else "wh1.dock.2")
        )
        if n % 4 == 0:
            events1.append(wh1.event(epc=sgtin(n), direction="out", at=at + timedelta(hours=5)))
        events1.append(wh1.event(gtin=GTIN_B, qty=n % 5 + 1, at=at))
        events2.append(
            wh2.event(gtin=GTIN_B, qty=2, read_point="wh2.dock.1", at=at + timedelta(minutes=1))
        )
    await ingestor.handle(wh1.topic, wh1.payload(events1))
    await ingestor.handle(wh2.topic, wh2.payload(events2))
    follower = LedgerFollower(store, RollupSink(), HistorySettings())
    while await follower.step():
        pass


async def _brute_force(
    probe: Probe, period: str, keys: tuple[str, ...]
) -> Counter[tuple[Any, ...]]:
    skus = {row["id"]: row["sku"] for row in (await probe.items()).values()}
    sums: Counter[tuple[Any, ...]] = Counter()
    for row in await probe.ledger():
        when = row["event_time"]
        bucket = when.replace(minute=0, second=0, microsecond=0)
        if period == "day":
            bucket = bucket.replace(hour=0)
        for place, side in ((row["from_location"], "out"), (row["to_location"], "in")):
            if place is None:
                continue
            values = {
                "site": place.split(".")[0],
                "location": place,
                "read_point": row["read_point"],
                "sku": skus[row["item_id"]],
                "kind": row["kind"],
            }
            key = (bucket.isoformat().replace("+00:00", "Z"), side, *(values[k] for k in keys))
            sums[(*key, "count")] += 1
            sums[(*key, "quantity")] += row["quantity"]
    return sums


async def _all_pages(
    client: httpx.AsyncClient, params: dict[str, Any], *, limit: int
) -> list[dict[str, Any]]:
    """Every row of the movement history for ``params``, page by page (at most 200 pages)."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(200):
        page = await client.get(
            "/api/v1/history/movements",
            params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})},
            headers=VIEWER,
        )
        assert page.status_code == 200, page.text
        rows += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError("more than 200 pages")


def _as_counter(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> Counter[tuple[Any, ...]]:
    sums: Counter[tuple[Any, ...]] = Counter()
    for row in rows:
        key = (row["bucket"].replace("+00:00", "Z"), row["side"], *(row[k] for k in keys))
        sums[(*key, "count")] += int(row["count"])
        sums[(*key, "quantity")] += int(row["quantity"])
    return sums


@pytest.mark.parametrize(
    ("period", "keys"),
    [("hour", ("read_point", "kind")), ("day", ("site", "location", "read_point", "sku", "kind"))],
)
async def test_movement_buckets_equal_the_ledger_summed(
    client: httpx.AsyncClient, history: None, probe: Probe, period: str, keys: tuple[str, ...]
) -> None:
    response = await client.get(
        "/api/v1/history/movements",
        params={"bucket": period, "group_by": ",".join(keys), **WINDOW},
        headers=VIEWER,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    assert _as_counter(body["items"], keys) == await _brute_force(probe, period, keys)


async def test_filters_and_pages(client: httpx.AsyncClient, history: None, probe: Probe) -> None:
    keys = ("read_point", "kind")
    params = {
        "bucket": "hour",
        "group_by": "read_point,kind",
        "read_point": "wh1.dock.1",
        "kind": "receipt",
        "side": "in",
        **WINDOW,
    }
    expected = Counter(
        {
            key: value
            for key, value in (await _brute_force(probe, "hour", keys)).items()
            if key[1] == "in" and key[2] == "wh1.dock.1" and key[3] == "receipt"
        }
    )
    rows = await _all_pages(client, params, limit=3)
    assert len(rows) > 3
    assert _as_counter(rows, keys) == expected
    assert [row["bucket"] for row in rows] == sorted(row["bucket"] for row in rows)


async def test_keyset_pages_over_every_grouping_equal_one_page(
    client: httpx.AsyncClient, history: None
) -> None:
    """Pages follow one another by the last bucket's keys (a joined SKU, locations, read
    points without one); a cursor given out as an offset still works."""
    for group_by in ("location,sku", "site,read_point,kind", ""):
        params = {"bucket": "hour", "group_by": group_by, **WINDOW}
        whole = await client.get("/api/v1/history/movements", params=params, headers=VIEWER)
        assert whole.status_code == 200, whole.text
        rows = await _all_pages(client, params, limit=2)
        assert rows == whole.json()["items"]
        assert len(rows) > 2
    offset = base64.urlsafe_b64encode(b"o:2").decode("ascii")
    params = {"bucket": "hour", "group_by": "location,sku", **WINDOW}
    skipped = await client.get(
        "/api/v1/history/movements", params={**params, "cursor": offset}, headers=VIEWER
    )
    whole = await client.get("/api/v1/history/movements", params=params, headers=VIEWER)
    assert skipped.json()["items"] == whole.json()["items"][2:]


async def test_csv_by_accept_header_and_by_suffix_match_the_json(
    client: httpx.AsyncClient, history: None
) -> None:
    params = {"bucket": "day", "group_by": "location,sku", **WINDOW}
    body = (await client.get("/api/v1/history/movements", params=params, headers=VIEWER)).json()
    by_accept = await client.get(
        "/api/v1/history/movements", params=params, headers={**VIEWER, "Accept": "text/csv"}
    )
    by_suffix = await client.get("/api/v1/history/movements.csv", params=params, headers=VIEWER)
    for response in (by_accept, by_suffix):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert list(rows[0]) == ["bucket", "side", "location", "sku", "count", "quantity"]
        assert _as_counter(rows, ("location", "sku")) == _as_counter(
            body["items"], ("location", "sku")
        )


async def test_a_site_restricted_key_sees_its_site_only(
    client: httpx.AsyncClient, history: None, probe: Probe
) -> None:
    response = await client.get(
        "/api/v1/history/movements",
        params={"bucket": "day", "group_by": "site", **WINDOW},
        headers=bearer(WH2_VIEWER_KEY),
    )
    assert response.status_code == 200
    expected = Counter(
        {k: v for k, v in (await _brute_force(probe, "day", ("site",))).items() if k[2] == "wh2"}
    )
    assert expected
    assert _as_counter(response.json()["items"], ("site",)) == expected
    refused = await client.get(
        "/api/v1/history/movements", params={"location": "wh1.dock"}, headers=bearer(WH2_VIEWER_KEY)
    )
    assert refused.status_code == 403


async def test_daily_closing_stock_equals_the_ledger_up_to_each_day(
    client: httpx.AsyncClient, history: None, probe: Probe
) -> None:
    response = await client.get(
        "/api/v1/history/stock", params={"gtin": GTIN_B, **WINDOW}, headers=VIEWER
    )
    assert response.status_code == 200, response.text
    days = response.json()["items"]
    item_id = (await probe.items())[GTIN_B]["id"]
    rows = [row for row in await probe.ledger() if row["item_id"] == item_id]
    assert {day["site"] for day in days} == {"wh1", "wh2"}
    # Days 23 (since, 08:00, rounded down) to 28 (until is 28 08:00): six per site.
    assert len(days) == 2 * 6
    for day in days:
        end = datetime.fromisoformat(day["day"].replace("Z", "+00:00")) + timedelta(days=1)
        site = day["site"]
        expected = sum(
            row["quantity"] * ((row["to_location"] or "").split(".")[0] == site)
            - row["quantity"] * ((row["from_location"] or "").split(".")[0] == site)
            for row in rows
            if row["event_time"] < end
        )
        assert day["closing"] == expected, day
    balances = await probe.balances()
    for site in ("wh1", "wh2"):
        last = [day for day in days if day["site"] == site][-1]
        assert last["closing"] == sum(
            on_hand
            for (sku, location), on_hand in balances.items()
            if sku == GTIN_B and location.split(".")[0] == site
        )
    one_site = await client.get(
        "/api/v1/history/stock", params={"sku": GTIN_B, "site": "wh2", **WINDOW}, headers=VIEWER
    )
    assert one_site.json()["items"] == [day for day in days if day["site"] == "wh2"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("movements", {"group_by": "epc"}, "group_by: unknown 'epc'"),
        ("movements", {"group_by": "kind,kind"}, "twice"),
        (
            "movements",
            {"bucket": "hour", "since": "2024-01-01", "until": "2024-06-01"},
            "more than 92 days",
        ),
        ("movements", {"since": "2024-02-01", "until": "2024-01-01"}, "since must be before until"),
        ("movements", {"cursor": "bm9wZQ=="}, "bad cursor"),
        ("stock", {}, "exactly one of sku and gtin"),
        ("stock", {"sku": "x", "gtin": GTIN_A}, "exactly one of sku and gtin"),
        ("stock", {"sku": "no-such-item"}, "no item no-such-item"),
        ("stock", {"sku": "x", "since": "0001-01-02T00:00:00"}, "since must lie between"),
        ("movements", {"until": "9999-12-31T00:00:00"}, "until must lie between"),
        ("../reports/dead-stock", {"as_of": "0001-01-02T00:00:00"}, "as_of must lie between"),
    ],
)
async def test_bad_requests_say_what_is_wrong(
    client: httpx.AsyncClient, store: Store, path: str, params: dict[str, str], message: str
) -> None:
    response = await client.get(f"/api/v1/history/{path}", params=params, headers=VIEWER)
    assert 400 <= response.status_code < 500
    assert message in response.text


async def _dead_by_brute_force(probe: Probe, as_of: datetime, days: int) -> list[tuple[Any, ...]]:
    items = {row["id"]: row for row in (await probe.items()).values()}
    on_hand: Counter[tuple[str, int]] = Counter()
    last_out: dict[tuple[str, int], datetime] = {}
    cutoff = as_of.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
    for row in await probe.ledger():
        source = row["from_location"].split(".")[0] if row["from_location"] else None
        target = row["to_location"].split(".")[0] if row["to_location"] else None
        if target is not None:
            on_hand[(target, row["item_id"])] += row["quantity"]
        if source is not None:
            on_hand[(source, row["item_id"])] -= row["quantity"]
            day = row["event_time"].replace(hour=0, minute=0, second=0, microsecond=0)
            if source != target and row["event_time"] <= as_of:
                key = (source, row["item_id"])
                last_out[key] = max(day, last_out.get(key, day))
    return sorted(
        (site, items[item]["sku"], held, last_out.get((site, item)))
        for (site, item), held in on_hand.items()
        if held > 0 and not (last_out.get((site, item)) and last_out[(site, item)] >= cutoff)
    )


@pytest.mark.parametrize(("after_days", "days"), [(3, 1), (3, 2), (1, 90), (30, 7)])
async def test_dead_stock_equals_a_brute_force_over_the_ledger(
    client: httpx.AsyncClient, history: None, probe: Probe, after_days: int, days: int
) -> None:
    as_of = BASE_TIME + timedelta(days=after_days)
    params = {"as_of": as_of.isoformat(), "days": str(days)}
    response = await client.get("/api/v1/reports/dead-stock", params=params, headers=VIEWER)
    assert response.status_code == 200, response.text
    found = sorted(
        (
            row["site"],
            row["sku"],
            row["on_hand"],
            datetime.fromisoformat(row["last_outbound"].replace("Z", "+00:00"))
            if row["last_outbound"]
            else None,
        )
        for row in response.json()["items"]
    )
    assert found == await _dead_by_brute_force(probe, as_of, days)
    as_csv = await client.get("/api/v1/reports/dead-stock.csv", params=params, headers=VIEWER)
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(row["site"], row["sku"], int(row["on_hand"])) for row in rows] == [
        found_row[:3] for found_row in found
    ]
