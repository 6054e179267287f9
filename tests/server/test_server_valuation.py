"""Unit costs, valuation and the value reports, against figures worked out by hand from a
known ledger, on SQLite and PostgreSQL.

The ledger (item B: barcode quantities; item A: tagged units), t0 = ``BASE_TIME``:

=========  ==========================================  =====================================
when       what                                        cost in
=========  ==========================================  =====================================
t0         B: receive 10 at wh1 (dock)                 2.00 recorded against the receipt
t0         A: receive 3 units at wh1 (dock)            standard 10.00 (all sites, from t0)
t0+1d      B: receive 10 at wh1 (dock)                 standard 3.00 (all sites, from t0)
t0+2d      B: ship 5 from wh1; A: ship 1 unit
t0+3d      B: transfer 6 wh1 -> wh2; A: ship 1 unit
t0+4d      B: 2 damaged at wh1
t0+5d+1h   B: 4 found at wh2                           standard 4.00 at wh2 (from t0+5d)
=========  ==========================================  =====================================

B, moving average at wh1: 20 @ 50.00 (2.50); ship 5 -> 12.50; transfer 6 -> 15.00 (wh1
9 @ 22.50, wh2 6 @ 15.00); damaged 2 -> 5.00 (wh1 7 @ 17.50); found 4 at wh2 -> 10 @ 31.00.
B, FIFO at wh1: [10@2, 10@3]; ship 5 -> 10.00 ([5@2, 10@3]); transfer 6 -> 5@2 + 1@3 = 13.00
to wh2 (wh1 [9@3]); damaged 2 -> 6.00 (wh1 [7@3] = 21.00); wh2 [5@2, 1@3, 4@4] = 29.00.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from server_helpers import (
    ADMIN_KEY,
    BASE_TIME,
    GTIN_A,
    GTIN_B,
    OPERATOR_KEY,
    VIEWER_KEY,
    WH2_VIEWER_KEY,
    Batches,
    bearer,
    make_scoped_settings,
    sgtin,
)

from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.errors import StoreError
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema.costs import item_costs, masterdata_changes, receipt_costs

VIEWER = bearer(VIEWER_KEY)
OPERATOR = bearer(OPERATOR_KEY)
ADMIN = bearer(ADMIN_KEY)
T0 = BASE_TIME
DAY = timedelta(days=1)


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


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str) -> Any:
    response = await client.post(f"/api/v1/{path}", headers=bearer(key), json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def _skus(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.get("/api/v1/items", headers=VIEWER, params={"limit": 100})
    return {item["gtin"]: item["sku"] for item in response.json()["items"]}


def _undirected(dock: Batches, epc: str, at: datetime) -> dict[str, Any]:
    """A portal pass the edge could give no direction (both sides read): unresolved."""
    event = dock.event(epc=epc, direction=None, at=at)
    event["biz_step"] = "other"
    event["confidence"] = 0.0
    event["reads"] = {
        "count": 7,
        "antennas": [1, 2],
        "first_seen": (at - timedelta(seconds=3)).isoformat(),
        "last_seen": at.isoformat(),
        "outside_count": 4,
        "inside_count": 3,
        "reason": "no_separation",
    }
    return event


@pytest.fixture
async def ledger(client: httpx.AsyncClient, ingestor: Ingestor) -> dict[str, Any]:
    """The ledger of the module docstring; returns the SKUs and the first receipt's id."""
    dock = Batches()
    events = [
        dock.event(gtin=GTIN_B, qty=10, at=T0),
        *(dock.event(epc=sgtin(n), at=T0 + timedelta(minutes=n)) for n in range(3)),
        dock.event(gtin=GTIN_B, qty=10, at=T0 + DAY),
        dock.event(gtin=GTIN_B, qty=5, direction="out", at=T0 + 2 * DAY),
        dock.event(epc=sgtin(0), direction="out", at=T0 + 2 * DAY),
        dock.event(epc=sgtin(1), direction="out", at=T0 + 3 * DAY),
        _undirected(dock, sgtin(7), T0 + timedelta(minutes=30)),
    ]
    result = await ingestor.handle(dock.topic, dock.payload(events))
    assert result.applied == len(events)
    skus = await _skus(client)
    a, b = skus[GTIN_A], skus[GTIN_B]
    for location in ("wh2", "wh2.store"):
        await _post(client, "locations", {"id": location}, ADMIN_KEY)
    movements = await client.get(
        "/api/v1/movements", headers=VIEWER, params={"sku": b, "until": (T0 + DAY).isoformat()}
    )
    first = [row for row in movements.json()["items"] if row["kind"] == "receipt"]
    assert len(first) == 1, movements.text
    await _post(
        client, "receipt-costs", {"movement_id": first[0]["id"], "unit_cost": "2"}, OPERATOR_KEY
    )
    for sku, cost in ((b, "3.00"), (a, "10")):
        await _post(
            client,
            f"items/{sku}/costs",
            {"unit_cost": cost, "effective_from": T0.isoformat()},
            ADMIN_KEY,
        )
    await _post(
        client,
        f"items/{b}/costs",
        {"unit_cost": "4", "site": "wh2", "effective_from": (T0 + 5 * DAY).isoformat()},
        ADMIN_KEY,
    )
    await _post(
        client,
        "transfers",
        {
            "sku": b,
            "from_location": "wh1.receiving",
            "to_location": "wh2.store",
            "quantity": 6,
            "event_time": (T0 + 3 * DAY).isoformat(),
        },
        OPERATOR_KEY,
    )
    await _post(
        client,
        "adjustments",
        {
            "sku": b,
            "reason": "damaged",
            "location": "wh1.receiving",
            "quantity": -2,
            "event_time": (T0 + 4 * DAY).isoformat(),
        },
        OPERATOR_KEY,
    )
    await _post(
        client,
        "adjustments",
        {
            "sku": b,
            "reason": "found",
            "location": "wh2.store",
            "quantity": 4,
            "event_time": (T0 + 5 * DAY + timedelta(hours=1)).isoformat(),
        },
        OPERATOR_KEY,
    )
    return {"a": a, "b": b, "first_receipt": first[0]["id"]}


async def _report(client: httpx.AsyncClient, name: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/api/v1/reports/{name}", headers=VIEWER, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _by(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[key] for key in keys): row for row in rows}


AS_OF = (T0 + 6 * DAY).isoformat()


@pytest.mark.parametrize(
    ("method", "wh1", "wh2", "a_value"),
    [("moving_average", 17.5, 31.0, 10.0), ("fifo", 21.0, 29.0, 10.0)],
)
async def test_stock_value_per_item_and_site(
    client: httpx.AsyncClient,
    ledger: dict[str, Any],
    method: str,
    wh1: float,
    wh2: float,
    a_value: float,
) -> None:
    report = await _report(client, "stock-value", as_of=AS_OF, method=method)
    rows = _by(report["items"], "site", "sku")
    b, a = ledger["b"], ledger["a"]
    assert (rows[("wh1", b)]["on_hand"], rows[("wh1", b)]["value"]) == (7, wh1)
    assert (rows[("wh2", b)]["on_hand"], rows[("wh2", b)]["value"]) == (10, wh2)
    assert (rows[("wh1", a)]["on_hand"], rows[("wh1", a)]["value"]) == (1, a_value)
    assert rows[("wh1", b)]["unit_cost"] == pytest.approx(wh1 / 7, abs=1e-6)
    assert report["total_value"] == wh1 + wh2 + a_value
    assert all(row["unvalued"] == 0 for row in report["items"])
    # Before the second receipt, only the first (recorded cost 2.00) is there.
    early = await _report(
        client, "stock-value", as_of=(T0 + timedelta(hours=12)).isoformat(), method=method
    )
    assert _by(early["items"], "site", "sku")[("wh1", b)]["value"] == 20.0


async def test_stock_value_by_location_and_category_and_as_csv(
    client: httpx.AsyncClient, ledger: dict[str, Any]
) -> None:
    by_location = await _report(client, "stock-value", as_of=AS_OF, group_by="location")
    rows = _by(by_location["items"], "location", "sku")
    assert rows[("wh2.store", ledger["b"])]["value"] == 31.0
    assert rows[("wh1.receiving", ledger["b"])]["on_hand"] == 7
    by_category = await _report(client, "stock-value", as_of=AS_OF, group_by="category")
    assert _by(by_category["items"], "site")[("wh1",)]["value"] == 27.5
    response = await client.get(
        "/api/v1/reports/stock-value.csv", headers=VIEWER, params={"as_of": AS_OF}
    )
    assert response.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert {(line["site"], line["sku"]): float(line["value"]) for line in lines} == {
        (row["site"], row["sku"]): row["value"]
        for row in (await _report(client, "stock-value", as_of=AS_OF))["items"]
    }
    # A key for wh2 sees wh2 only.
    scoped = await client.get(
        "/api/v1/reports/stock-value", headers=bearer(WH2_VIEWER_KEY), params={"as_of": AS_OF}
    )
    assert {row["site"] for row in scoped.json()["items"]} == {"wh2"}


@pytest.mark.parametrize(
    ("method", "opening", "closing", "cogs"),
    [("moving_average", 50.0, 17.5, 12.5), ("fifo", 50.0, 21.0, 10.0)],
)
async def test_turnover_and_days_of_supply(
    client: httpx.AsyncClient,
    ledger: dict[str, Any],
    method: str,
    opening: float,
    closing: float,
    cogs: float,
) -> None:
    since, until = T0 + 1.5 * DAY, T0 + 6 * DAY
    report = await _report(
        client,
        "turnover",
        since=since.isoformat(),
        until=until.isoformat(),
        method=method,
        site="wh1",
        sku=ledger["b"],
    )
    (row,) = report["items"]
    assert (row["opening_quantity"], row["opening_value"]) == (20, opening)
    assert (row["closing_quantity"], row["closing_value"]) == (7, closing)
    assert (row["shipped_quantity"], row["cost_of_goods_shipped"]) == (5, cogs)
    assert row["received_quantity"] == 0
    assert row["turnover"] == pytest.approx(cogs / ((opening + closing) / 2), abs=1e-4)
    assert row["days_of_supply"] == pytest.approx(7 / (5 / 4.5), abs=0.01)


async def test_aging_buckets_from_fifo_layers(
    client: httpx.AsyncClient, ledger: dict[str, Any]
) -> None:
    report = await _report(client, "aging", as_of=AS_OF, buckets="1,5", sku=ledger["b"])
    assert report["buckets"] == ["0-1", "2-5", "6+"]
    rows = _by(report["items"], "site")
    wh1 = [(bucket["quantity"], bucket["value"]) for bucket in rows[("wh1",)]["buckets"]]
    wh2 = [(bucket["quantity"], bucket["value"]) for bucket in rows[("wh2",)]["buckets"]]
    assert wh1 == [(0, 0.0), (7, 21.0), (0, 0.0)]
    # wh2 holds 5 of t0's layer (6 days), 1 of t0+1d's (5 days), the 4 found (23 hours).
    assert wh2 == [(4, 16.0), (1, 3.0), (5, 10.0)]
    response = await client.get(
        "/api/v1/reports/aging",
        headers={**VIEWER, "Accept": "text/csv"},
        params={"as_of": AS_OF, "buckets": "1,5", "sku": ledger["b"]},
    )
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert [(line["site"], line["quantity_6+"], line["value_2-5"]) for line in lines] == [
        ("wh1", "0", "21.0"),
        ("wh2", "5", "3.0"),
    ]


async def test_abc_xyz(client: httpx.AsyncClient, ledger: dict[str, Any]) -> None:
    report = await _report(
        client,
        "abc-xyz",
        since=T0.isoformat(),
        until=AS_OF,
        per="day",
        a_share="0.5",
    )
    rows = _by(report["items"], "sku")
    a, b = rows[(ledger["a"],)], rows[(ledger["b"],)]
    assert report["periods"] == 6
    # A shipped 2 units at 10.00, B 5 at 2.50: 20.00 and 12.50 of 32.50.
    assert (a["shipped_value"], a["abc"]) == (20.0, "A")
    assert (b["shipped_value"], b["abc"]) == (12.5, "B")
    assert a["share"] == pytest.approx(20 / 32.5, abs=1e-6)
    # Daily demand A [0,0,1,1,0,0]: cv sqrt(2)/1; B [0,0,5,0,0,0]: cv sqrt(5).
    assert a["cv"] == pytest.approx(2**0.5, abs=1e-4)
    assert b["cv"] == pytest.approx(5**0.5, abs=1e-4)
    assert (a["abc_xyz"], b["abc_xyz"]) == ("AZ", "BZ")
    wide = await _report(
        client, "abc-xyz", since=T0.isoformat(), until=AS_OF, per="day", x_cv="2", y_cv="3"
    )
    assert {row["sku"]: row["xyz"] for row in wide["items"]} == {ledger["a"]: "X", ledger["b"]: "Y"}


@pytest.mark.parametrize(("method", "value"), [("moving_average", 5.0), ("fifo", 6.0)])
async def test_losses_by_reason_and_site(
    client: httpx.AsyncClient, ledger: dict[str, Any], method: str, value: float
) -> None:
    report = await _report(client, "losses", since=T0.isoformat(), until=AS_OF, method=method)
    assert report["items"] == [
        {"reason": "damaged", "site": "wh1", "sku": None, "quantity": 2, "value": value}
    ]
    by_sku = await _report(
        client, "losses", since=T0.isoformat(), until=AS_OF, group_by="sku", method=method
    )
    assert [(row["sku"], row["quantity"]) for row in by_sku["items"]] == [(ledger["b"], 2)]
    outside = await _report(client, "losses", since=(T0 + 4.5 * DAY).isoformat(), until=AS_OF)
    assert outside["items"] == []


async def test_door_throughput_and_pass_quality(
    client: httpx.AsyncClient, ledger: dict[str, Any]
) -> None:
    report = await _report(
        client,
        "door-throughput",
        since=T0.isoformat(),
        until=(T0 + 4 * DAY).isoformat(),
        read_point="wh1.dock.1",
    )
    hours = {row["bucket"].replace("Z", "+00:00"): row for row in report["items"]}
    first = hours[T0.isoformat()]
    # B 10 and three units of A received; one pass without a direction.
    assert first["kinds"] == {"receipt": {"rows": 4, "quantity": 13}}
    assert (first["unresolved"], first["pass_quality"]) == (1, 0.8)
    ships = hours[(T0 + 2 * DAY).isoformat()]
    assert ships["kinds"] == {"shipment": {"rows": 2, "quantity": 6}}
    assert ships["pass_quality"] == 1.0
    assert len(hours) == 4
    response = await client.get(
        "/api/v1/reports/door-throughput.csv",
        headers=VIEWER,
        params={"since": T0.isoformat(), "until": (T0 + 4 * DAY).isoformat()},
    )
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert sum(int(line["receipt_quantity"]) for line in lines) == 23
    assert sum(int(line["shipment_rows"]) for line in lines) == 3


async def test_costs_keep_their_history_and_audit_entries(
    client: httpx.AsyncClient, ledger: dict[str, Any], store: Store
) -> None:
    b = ledger["b"]
    costs = (await client.get(f"/api/v1/items/{b}/costs", headers=VIEWER)).json()["items"]
    assert [(row["site"], row["unit_cost"], row["actor"]) for row in costs] == [
        ("wh2", "4.000000", "admin-3"),
        (None, "3.000000", "admin-3"),
    ]
    # A second cost for the same receipt replaces the first in the books; both stay.
    await _post(
        client,
        "receipt-costs",
        {"movement_id": ledger["first_receipt"], "unit_cost": "2.5", "note": "invoice 77"},
        OPERATOR_KEY,
    )
    report = await _report(
        client, "stock-value", as_of=(T0 + timedelta(hours=12)).isoformat(), sku=b
    )
    assert report["items"][0]["value"] == 25.0
    trail = await client.get(
        "/api/v1/audit/masterdata",
        headers=VIEWER,
        params={"entity": "cost", "key": f"movement:{ledger['first_receipt']}"},
    )
    changes = trail.json()["items"]
    assert [(c["action"], c["actor"]) for c in changes] == [("update", "olga"), ("create", "olga")]
    assert changes[0]["before"]["unit_cost"] == "2.000000"
    assert changes[0]["after"]["unit_cost"] == "2.500000"
    # A cursor past the largest row id is refused with a reason (was a 500 on SQLite).
    beyond = await client.get(
        "/api/v1/audit/masterdata", headers=VIEWER, params={"cursor": "9" * 19}
    )
    assert beyond.status_code == 400, beyond.text
    assert "cursor" in beyond.json()["detail"]
    # Only receipts from outside take a cost; a transfer does not.
    movements = await client.get(
        "/api/v1/movements", headers=VIEWER, params={"sku": b, "location": "wh2"}
    )
    transfer = next(row for row in movements.json()["items"] if row["kind"] == "transfer")
    refused = await client.post(
        "/api/v1/receipt-costs",
        headers=OPERATOR,
        json={"movement_id": transfer["id"], "unit_cost": "1"},
    )
    assert refused.status_code == 409, refused.text
    negative = await client.post(
        f"/api/v1/items/{b}/costs", headers=ADMIN, json={"unit_cost": "-1"}
    )
    assert negative.status_code == 422
    viewer = await client.post(f"/api/v1/items/{b}/costs", headers=VIEWER, json={"unit_cost": "1"})
    assert viewer.status_code == 403
    # The cost tables and the trail refuse edits in the database itself.
    for table in (item_costs, receipt_costs, masterdata_changes):
        with pytest.raises(StoreError, match="append-only"):
            async with store.begin("trying to edit history") as conn:
                await conn.execute(sa.delete(table))


async def test_masterdata_changes_are_audited(client: httpx.AsyncClient, store: Store) -> None:
    await _post(client, "item-categories", {"code": "tools", "name": "Tools"}, ADMIN_KEY)
    await _post(client, "items", {"sku": "HAMMER", "name": "Hammer"}, ADMIN_KEY)
    changed = await client.patch(
        "/api/v1/items/HAMMER", headers=ADMIN, json={"name": "Claw hammer", "category": "tools"}
    )
    assert changed.status_code == 200, changed.text
    await _post(client, "locations", {"id": "wh9", "name": "Nine"}, ADMIN_KEY)
    renamed = await client.patch("/api/v1/locations/wh9", headers=ADMIN, json={"name": "Nine B"})
    assert renamed.status_code == 200, renamed.text
    removed = await client.delete("/api/v1/locations/wh9", headers=ADMIN)
    assert removed.status_code == 204
    settings = await client.put(
        "/api/v1/replenishment/settings/HAMMER", headers=ADMIN, json={"min_order": 5}
    )
    assert settings.status_code == 200, settings.text
    trail = (await client.get("/api/v1/audit/masterdata", headers=VIEWER)).json()["items"]
    seen = [(c["entity"], c["key"], c["action"]) for c in trail]
    assert seen == [
        ("reorder_settings", "HAMMER", "create"),
        ("location", "wh9", "delete"),
        ("location", "wh9", "update"),
        ("location", "wh9", "create"),
        ("item", "HAMMER", "update"),
        ("item", "HAMMER", "create"),
        ("category", "tools", "create"),
    ]
    item_update = trail[4]
    assert (item_update["before"]["name"], item_update["after"]["name"]) == (
        "Hammer",
        "Claw hammer",
    )
    assert (item_update["before"]["category"], item_update["after"]["category"]) == (None, "tools")
    assert trail[1]["after"] is None
    assert trail[1]["before"]["name"] == "Nine B"
    # Filters and pages.
    items_only = await client.get(
        "/api/v1/audit/masterdata", headers=VIEWER, params={"entity": "item", "limit": 1}
    )
    page = items_only.json()
    assert [c["action"] for c in page["items"]] == ["update"]
    older = await client.get(
        "/api/v1/audit/masterdata",
        headers=VIEWER,
        params={"entity": "item", "limit": 1, "cursor": page["next_cursor"]},
    )
    assert [c["action"] for c in older.json()["items"]] == ["create"]
    assert older.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("reports/aging", {"buckets": "60,30"}, "increasing"),
        ("reports/aging", {"buckets": "a"}, "whole days"),
        ("reports/losses", {"group_by": "color"}, "unknown 'color'"),
        ("reports/abc-xyz", {"a_share": "0.9", "b_share": "0.8"}, "a_share"),
        ("reports/turnover", {"since": "2024-01-02", "until": "2024-01-01"}, "before until"),
        ("reports/door-throughput", {"since": "2024-01-01", "until": "2024-06-01"}, "92 days"),
    ],
)
async def test_bad_report_requests_say_what_is_wrong(
    client: httpx.AsyncClient, path: str, params: dict[str, str], needle: str
) -> None:
    response = await client.get(f"/api/v1/{path}", headers=VIEWER, params=params)
    assert response.status_code == 400, response.text
    assert needle in response.json()["detail"]


async def test_count_accuracy(
    client: httpx.AsyncClient, ledger: dict[str, Any], ingestor: Ingestor
) -> None:
    # At t0+6d wh1.receiving holds unit 2 of A and 7 of B; the count finds unit 2 and 6 of B.
    counter = Batches(epoch="c0c0c0c0")
    count = counter.event(at=T0 + 6 * DAY)
    count |= {
        "biz_step": "cycle_counting",
        "biz_location": "wh1.receiving",
        "direction": None,
        "quantities": [
            {"gtin": GTIN_A, "serial": sgtin(2).rsplit(".", 1)[1]},
            {"gtin": GTIN_B, "qty": 6},
        ],
    }
    result = await ingestor.handle(counter.topic, counter.payload([count]))
    assert result.applied == 1
    window = {"since": T0.isoformat(), "until": (T0 + 7 * DAY).isoformat()}
    exact = await _report(client, "count-accuracy", **window)
    assert (exact["counts"], exact["lines"], exact["lines_within"]) == (1, 2, 1)
    assert (exact["counts_within"], exact["line_accuracy"]) == (0, 0.5)
    (row,) = exact["items"]
    assert (row["location"], row["expected"], row["counted"]) == ("wh1.receiving", 8, 7)
    assert (row["absolute_difference"], row["accuracy"]) == (1, 0.5)
    loose = await _report(client, "count-accuracy", tolerance=1, **window)
    assert (loose["lines_within"], loose["counts_within"], loose["line_accuracy"]) == (2, 1, 1.0)
    # 15 % of 7 expected is 1.05: within; 10 % is 0.7: not.
    by_share = await _report(client, "count-accuracy", tolerance_pct=15, **window)
    assert by_share["lines_within"] == 2
    by_less = await _report(client, "count-accuracy", tolerance_pct=10, **window)
    assert by_less["lines_within"] == 1
    elsewhere = await _report(client, "count-accuracy", location="wh2", **window)
    assert elsewhere["counts"] == 0
    assert elsewhere["line_accuracy"] is None
    response = await client.get("/api/v1/reports/count-accuracy.csv", headers=VIEWER, params=window)
    (line,) = list(csv.DictReader(io.StringIO(response.text)))
    assert (line["event_id"], line["lines_within"]) == (count["event_id"], "1")
