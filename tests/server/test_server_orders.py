"""Purchase, sales and transfer orders: the API (roles, sites, workflow, lines) and how the
edge's receipts and shipments count against them, on a real SQLite file and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from server_helpers import (
    BASE_TIME,
    GTIN_A,
    GTIN_B,
    OPERATOR_KEY,
    VIEWER_KEY,
    WH1_OPERATOR_KEY,
    WH2_VIEWER_KEY,
    Batches,
    Probe,
    RecordingPublisher,
    bearer,
    make_scoped_settings,
    sgtin,
)

from server.api.factory import create_app
from server.config.settings import DatabaseSettings, ServerSettings
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.queries.orders import rebuild_positions
from server.store.check import check_ledger
from server.store.database import Store, alembic_config
from server.store.schema.core import items, locations
from server.store.schema.orders import order_positions

GTIN_C = "04006381333931"
OPERATOR = bearer(OPERATOR_KEY)
VIEWER = bearer(VIEWER_KEY)
READ_POINTS: list[dict[str, Any]] = [
    {"id": "wh1.dock.1", "inbound_location": "wh1.receiving", "outbound": "ship"},
    {"id": "wh1.scanner", "inbound_location": "wh1.receiving", "outbound": "ignore"},
    {"id": "wh2.dock.1", "inbound_location": "wh2.receiving", "site": "wh2"},
]
LOCATIONS = ("wh1", "wh1.receiving", "wh2", "wh2.receiving", "wh3", "wh3.receiving")


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_scoped_settings(database_url, read_points=READ_POINTS)


@pytest.fixture
async def master(store: Store) -> None:
    """Three reviewed items and the locations orders name (as an admin would create them)."""
    async with store.begin("seeding master data") as conn:
        await conn.execute(
            items.insert(),
            [
                {"sku": sku, "gtin": gtin, "name": sku.title(), "reviewed": True}
                | {"created_at": BASE_TIME}
                for sku, gtin in (("WIDGET", GTIN_A), ("GADGET", GTIN_B), ("BOLT", GTIN_C))
            ],
        )
        await conn.execute(
            locations.insert(),
            [
                {
                    "id": location,
                    "parent": location.rpartition(".")[0] or None,
                    "kind": "site" if "." not in location else "zone",
                    "created_at": BASE_TIME,
                }
                for location in LOCATIONS
            ],
        )


@pytest.fixture
async def client(
    store: Store, settings: ServerSettings, metrics: Metrics, master: None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, settings, metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        yield http


def at(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


async def send(ingestor: Ingestor, batches: Batches, *events: dict[str, Any]) -> None:
    result = await ingestor.handle(batches.topic, batches.payload(list(events)))
    assert result.outcome == "applied", result.reason
    assert result.dead_letters == 0


async def create(
    client: httpx.AsyncClient, kind: str, body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    response = await client.post(f"/api/v1/{kind}-orders", json=body, headers=OPERATOR)
    assert response.status_code == status, response.text
    found: dict[str, Any] = response.json()
    return found


async def move(client: httpx.AsyncClient, kind: str, order: int, to: str) -> httpx.Response:
    return await client.post(
        f"/api/v1/{kind}-orders/{order}/status", json={"status": to}, headers=OPERATOR
    )


async def stock(client: httpx.AsyncClient, location: str) -> dict[tuple[str, str], tuple[int, ...]]:
    """(sku, location) -> (on hand, on order, allocated, in transit, available)."""
    response = await client.get("/api/v1/stock", params={"location": location}, headers=VIEWER)
    assert response.status_code == 200, response.text
    return {
        (row["sku"], row["location"]): (
            row["on_hand"],
            row["on_order"],
            row["allocated"],
            row["in_transit"],
            row["available"],
        )
        for row in response.json()["items"]
    }


def lines(order: dict[str, Any]) -> list[tuple[str, int, int, int, int, int]]:
    """(sku, quantity, received, shipped, short, over) per line."""
    return [
        (
            line["sku"],
            line["quantity"],
            line["received"],
            line["shipped"],
            line["short"],
            line["over"],
        )
        for line in order["lines"]
    ]


def open_alerts(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(a["kind"], a["subject"]) for a in alerts if a["closed_at"] is None}


async def positions_agree(store: Store) -> None:
    """``order_positions`` holds exactly what the open orders add up to."""
    async with store.engine.connect() as conn:
        expected = await rebuild_positions(conn)
        rows = await conn.execute(sa.select(order_positions))
        stored = {
            (row.item_id, row.location_id): {
                figure: int(getattr(row, figure))
                for figure in ("on_order", "allocated", "in_transit")
                if getattr(row, figure)
            }
            for row in rows
        }
    assert {key: value for key, value in stored.items() if value} == expected


async def test_orders_need_operators_and_valid_fields(client: httpx.AsyncClient) -> None:
    body = {
        "number": "PO-1",
        "location": "wh1.receiving",
        "lines": [{"sku": "WIDGET", "quantity": 2}],
    }
    assert (await client.post("/api/v1/purchase-orders", json=body)).status_code == 401
    response = await client.post("/api/v1/purchase-orders", json=body, headers=VIEWER)
    assert response.status_code == 403

    refused = [
        ({**body, "lines": [{"gtin": GTIN_A[:-1] + "9", "quantity": 1}]}, 422, None),
        ({**body, "lines": [{"gtin": "00000000000017", "quantity": 1}]}, 422, "lines[0].gtin"),
        ({**body, "location": "wh9.receiving"}, 422, "location"),
        ({**body, "location": "transit.x"}, 422, "location"),
        ({**body, "lines": [{"sku": "WIDGET", "gtin": GTIN_A, "quantity": 1}]}, 422, None),
        ({**body, "lines": [{"sku": "WIDGET", "quantity": 0}]}, 422, None),
        ({**body, "number": "PO 1"}, 422, None),
        ({**body, "destination": "wh2.receiving"}, 422, None),
    ]
    for bad, status, field in refused:
        response = await client.post("/api/v1/purchase-orders", json=bad, headers=OPERATOR)
        assert response.status_code == status, (bad, response.text)
        if field is not None:
            assert response.json()["field"] == field
    same_site = {"number": "TO-1", "location": "wh1.receiving", "destination": "wh1"}
    response = await client.post("/api/v1/transfer-orders", json=same_site, headers=OPERATOR)
    assert (response.status_code, response.json()["field"]) == (422, "destination")

    order = await create(client, "purchase", body)
    assert (order["status"], order["site"], order["created_by"]) == ("draft", "wh1", "olga")
    assert lines(order) == [("WIDGET", 2, 0, 0, 2, 0)]
    again = await client.post("/api/v1/purchase-orders", json=body, headers=OPERATOR)
    assert again.status_code == 409
    assert "exists already" in again.json()["detail"]
    # Numbers are unique per kind: a sales order may share it.
    await create(client, "sales", body)


async def test_receiving_against_a_purchase_order_and_closing_it(
    client: httpx.AsyncClient, ingestor: Ingestor, batches: Batches, probe: Probe, store: Store
) -> None:
    order = await create(
        client,
        "purchase",
        {
            "number": "PO-7",
            "location": "wh1.receiving",
            "partner": "ACME Supplies",
            "expected_at": "2024-11-26T09:00:00",
            "status": "open",
            "lines": [{"gtin": GTIN_A, "quantity": 3}, {"sku": "GADGET", "quantity": 10}],
        },
    )
    assert order["expected_at"].startswith("2024-11-26T09:00:00")
    assert await stock(client, "wh1") == {
        ("GADGET", "wh1.receiving"): (0, 10, 0, 0, 10),
        ("WIDGET", "wh1.receiving"): (0, 3, 0, 0, 3),
    }

    await send(
        ingestor,
        batches,
        batches.event(epc=sgtin(1)),
        batches.event(epc=sgtin(2)),
        batches.event(gtin=GTIN_B, qty=12, read_point="wh1.scanner"),  # 2 over
        batches.event(gtin=GTIN_C, qty=1, read_point="wh1.scanner"),  # on no order
    )
    wh2 = Batches(site="wh2", gateway="gw2")
    await send(ingestor, wh2, wh2.event(gtin=GTIN_C, read_point="wh2.dock.1"))  # wh2: no orders

    current = (await client.get(f"/api/v1/purchase-orders/{order['id']}", headers=VIEWER)).json()
    assert lines(current) == [("WIDGET", 3, 2, 0, 1, 0), ("GADGET", 10, 12, 0, 0, 2)]
    assert current["complete"] is False
    assert await stock(client, "wh1") == {
        ("BOLT", "wh1.receiving"): (1, 0, 0, 0, 1),
        ("GADGET", "wh1.receiving"): (12, 0, 0, 0, 12),
        ("WIDGET", "wh1.receiving"): (2, 1, 0, 0, 3),
    }
    assert open_alerts(await probe.alerts()) == {
        ("over_receipt", "PO-7/2"),
        ("unexpected_receipt", f"wh1/{GTIN_C}"),
    }

    closed = await move(client, "purchase", order["id"], "closed")
    assert closed.status_code == 200, closed.text
    assert (closed.json()["status"], closed.json()["closed_at"] is not None) == ("closed", True)
    assert ("short_receipt", "PO-7/1") in open_alerts(await probe.alerts())
    [short] = [a for a in await probe.alerts() if a["kind"] == "short_receipt"]
    assert (short["evidence"]["received"], short["evidence"]["ordered"]) == (2, 3)
    assert (await stock(client, "wh1"))[("WIDGET", "wh1.receiving")] == (2, 0, 0, 0, 2)
    reopened = await move(client, "purchase", order["id"], "open")
    assert reopened.status_code == 409
    assert "closed" in reopened.json()["detail"]
    # A closed order takes no more receipts.
    await send(ingestor, batches, batches.event(epc=sgtin(3)))
    current = (await client.get(f"/api/v1/purchase-orders/{order['id']}", headers=VIEWER)).json()
    assert current["lines"][0]["received"] == 2
    await positions_agree(store)
    assert await check_ledger(store) == []


async def test_sales_orders_allocate_and_unexpected_shipments_alert(
    client: httpx.AsyncClient, ingestor: Ingestor, batches: Batches, probe: Probe, store: Store
) -> None:
    await send(
        ingestor,
        batches,
        *(batches.event(epc=sgtin(n), at=at(0)) for n in (1, 2, 3)),
        batches.event(gtin=GTIN_B, qty=5, at=at(0)),
    )
    order = await create(
        client,
        "sales",
        {
            "number": "SO-1",
            "location": "wh1.receiving",
            "partner": "Corner Shop",
            "status": "open",
            "lines": [{"sku": "WIDGET", "quantity": 2}],
        },
    )
    assert (await stock(client, "wh1.receiving"))[("WIDGET", "wh1.receiving")] == (3, 0, 2, 0, 1)

    await send(ingestor, batches, batches.event(epc=sgtin(1), direction="out", at=at(5)))
    assert (await stock(client, "wh1"))[("WIDGET", "wh1.receiving")] == (2, 0, 1, 0, 1)
    assert open_alerts(await probe.alerts()) == set()

    await send(
        ingestor,
        batches,
        batches.event(gtin=GTIN_B, qty=2, direction="out", at=at(6)),  # on no sales order
        batches.event(epc=sgtin(2), direction="out", at=at(7)),
        batches.event(epc=sgtin(3), direction="out", at=at(8)),  # one more than ordered
    )
    current = (await client.get(f"/api/v1/sales-orders/{order['id']}", headers=VIEWER)).json()
    assert lines(current) == [("WIDGET", 2, 0, 3, 0, 1)]
    assert open_alerts(await probe.alerts()) == {
        ("unexpected_shipment", f"wh1/{GTIN_B}"),
        ("unexpected_shipment", f"wh1/{GTIN_A}"),
    }
    [over] = [a for a in await probe.alerts() if a["subject"] == f"wh1/{GTIN_A}"]
    assert over["evidence"]["over_shipped_order"] == "SO-1"
    assert await stock(client, "wh1") == {("GADGET", "wh1.receiving"): (3, 0, 0, 0, 3)}
    await positions_agree(store)


async def test_transfer_orders_keep_goods_in_transit_between_sites(
    client: httpx.AsyncClient, ingestor: Ingestor, batches: Batches, probe: Probe, store: Store
) -> None:
    await send(
        ingestor,
        batches,
        batches.event(epc=sgtin(1), at=at(0)),
        batches.event(epc=sgtin(2), at=at(0)),
        batches.event(gtin=GTIN_B, qty=5, at=at(0)),
    )
    order = await create(
        client,
        "transfer",
        {
            "number": "TO-1",
            "location": "wh1.receiving",
            "destination": "wh2.receiving",
            "status": "open",
            "lines": [{"gtin": GTIN_A, "quantity": 2}, {"gtin": GTIN_B, "quantity": 3}],
        },
    )
    assert (order["site"], order["destination_site"]) == ("wh1", "wh2")
    assert await stock(client, "wh1") == {
        ("GADGET", "wh1.receiving"): (5, 0, 3, 0, 2),
        ("WIDGET", "wh1.receiving"): (2, 0, 2, 0, 0),
    }

    await send(
        ingestor,
        batches,
        batches.event(epc=sgtin(1), direction="out", at=at(10)),
        batches.event(gtin=GTIN_B, qty=3, direction="out", at=at(10)),
    )
    unit = (await probe.units())[sgtin(1)]
    assert (unit["status"], unit["location_id"], unit["site"]) == (
        "in_transit",
        "transit.TO-1",
        "wh1",
    )
    assert await stock(client, "transit") == {
        ("GADGET", "transit.TO-1"): (3, 0, 0, 0, 3),
        ("WIDGET", "transit.TO-1"): (1, 0, 0, 0, 1),
    }
    assert await stock(client, "wh2") == {
        ("GADGET", "wh2.receiving"): (0, 0, 0, 3, 0),
        ("WIDGET", "wh2.receiving"): (0, 0, 0, 1, 0),
    }
    assert (await stock(client, "wh1"))[("WIDGET", "wh1.receiving")] == (1, 0, 1, 0, 0)

    wh2 = Batches(site="wh2", gateway="gw2")
    await send(
        ingestor,
        wh2,
        wh2.event(epc=sgtin(1), read_point="wh2.dock.1", at=at(120)),
        wh2.event(gtin=GTIN_B, qty=3, read_point="wh2.dock.1", at=at(120)),
    )
    unit = (await probe.units())[sgtin(1)]
    assert (unit["status"], unit["location_id"], unit["site"]) == (
        "in_stock",
        "wh2.receiving",
        "wh2",
    )
    assert await stock(client, "wh2") == {
        ("GADGET", "wh2.receiving"): (3, 0, 0, 0, 3),
        ("WIDGET", "wh2.receiving"): (1, 0, 0, 0, 1),
    }
    assert await stock(client, "transit") == {}
    current = (await client.get(f"/api/v1/transfer-orders/{order['id']}", headers=VIEWER)).json()
    assert [
        (line["shipped"], line["received"], line["in_transit"]) for line in current["lines"]
    ] == [
        (1, 1, 0),
        (3, 3, 0),
    ]
    moved = [(r["kind"], r["from_location"], r["to_location"]) for r in await probe.ledger()][3:]
    assert moved == [
        ("transfer", "wh1.receiving", "transit.TO-1"),
        ("transfer", "wh1.receiving", "transit.TO-1"),
        ("transfer", "transit.TO-1", "wh2.receiving"),
        ("transfer", "transit.TO-1", "wh2.receiving"),
    ]
    assert not {a["kind"] for a in await probe.alerts()} & {
        "impossible_movement",
        "unexpected_receipt",
        "unexpected_shipment",
    }
    await positions_agree(store)
    assert await check_ledger(store) == []


async def test_concurrent_batches_count_against_one_order_line(
    client: httpx.AsyncClient, store: Store, settings: ServerSettings, probe: Probe
) -> None:
    # Two server instances apply two gateways' receipts against one line at the same time.
    order = await create(
        client,
        "purchase",
        {
            "number": "PO-5",
            "location": "wh1.receiving",
            "status": "open",
            "lines": [{"gtin": GTIN_B, "quantity": 8}],
        },
    )
    feeds = [Batches(gateway=f"gw{n}") for n in (1, 2)]
    ingestors = [Ingestor(store, settings, RecordingPublisher(), Metrics()) for _ in feeds]
    results = await asyncio.gather(
        *(
            ingestor.handle(
                feed.topic,
                feed.payload([feed.event(gtin=GTIN_B, qty=5, read_point="wh1.scanner")]),
            )
            for ingestor, feed in zip(ingestors, feeds, strict=True)
        )
    )
    assert [result.applied for result in results] == [1, 1]
    current = (await client.get(f"/api/v1/purchase-orders/{order['id']}", headers=VIEWER)).json()
    assert lines(current) == [("GADGET", 8, 10, 0, 0, 2)]
    assert await stock(client, "wh1") == {("GADGET", "wh1.receiving"): (10, 0, 0, 0, 10)}
    assert ("over_receipt", "PO-5/1") in open_alerts(await probe.alerts())
    await positions_agree(store)


async def test_lines_and_terms_change_only_while_the_workflow_allows(
    client: httpx.AsyncClient, ingestor: Ingestor, batches: Batches, store: Store
) -> None:
    order = await create(client, "purchase", {"number": "PO-9", "location": "wh1"})
    path = f"/api/v1/purchase-orders/{order['id']}"
    added = await client.post(
        f"{path}/lines", json={"sku": "WIDGET", "quantity": 4}, headers=OPERATOR
    )
    assert added.status_code == 201, added.text
    await client.post(f"{path}/lines", json={"gtin": GTIN_B, "quantity": 1}, headers=OPERATOR)
    removed = await client.delete(f"{path}/lines/2", headers=OPERATOR)
    assert [line["line_no"] for line in removed.json()["lines"]] == [1]
    again = await client.post(
        f"{path}/lines", json={"sku": "BOLT", "quantity": 1}, headers=OPERATOR
    )
    assert [line["line_no"] for line in again.json()["lines"]] == [1, 3]  # numbers not reused
    patched = await client.patch(
        path, json={"location": "wh1.receiving", "note": "dock 1\nplease"}, headers=OPERATOR
    )
    assert (patched.json()["location"], patched.json()["note"]) == (
        "wh1.receiving",
        "dock 1\nplease",
    )

    assert (await move(client, "purchase", order["id"], "open")).status_code == 200
    assert (await stock(client, "wh1.receiving"))[("WIDGET", "wh1.receiving")][1] == 4
    changed = await client.put(f"{path}/lines/1", json={"quantity": 6}, headers=OPERATOR)
    assert changed.status_code == 200
    assert (await stock(client, "wh1.receiving"))[("WIDGET", "wh1.receiving")][1] == 6
    late = await client.patch(path, json={"location": "wh1"}, headers=OPERATOR)
    assert late.status_code == 409
    assert "draft" in late.json()["detail"]
    terms = await client.patch(path, json={"partner": "Other Co", "note": None}, headers=OPERATOR)
    assert (terms.json()["partner"], terms.json()["note"]) == ("Other Co", None)

    await send(ingestor, batches, batches.event(epc=sgtin(1)))
    refused = await client.delete(f"{path}/lines/1", headers=OPERATOR)
    assert refused.status_code == 409
    cancel = await move(client, "purchase", order["id"], "cancelled")
    assert cancel.status_code == 409
    assert "close it instead" in cancel.json()["detail"]

    missing = [
        await client.get("/api/v1/purchase-orders/999", headers=VIEWER),
        await client.get(f"/api/v1/sales-orders/{order['id']}", headers=VIEWER),
        await client.put(f"{path}/lines/7", json={"quantity": 1}, headers=OPERATOR),
    ]
    assert [response.status_code for response in missing] == [404, 404, 404]

    draft = await create(client, "sales", {"number": "SO-2", "location": "wh1", "lines": []})
    assert (await move(client, "sales", draft["id"], "cancelled")).json()["status"] == "cancelled"
    frozen = await client.post(
        f"/api/v1/sales-orders/{draft['id']}/lines",
        json={"sku": "BOLT", "quantity": 1},
        headers=OPERATOR,
    )
    assert frozen.status_code == 409
    await positions_agree(store)


async def test_lists_page_filter_and_keep_to_the_keys_sites(client: httpx.AsyncClient) -> None:
    for number, location in (("PO-1", "wh1"), ("PO-2", "wh2"), ("PO-3", "wh1.receiving")):
        await create(
            client,
            "purchase",
            {"number": number, "location": location, "lines": [{"sku": "WIDGET", "quantity": 1}]},
        )
    transfer = await create(
        client, "transfer", {"number": "TO-5", "location": "wh1", "destination": "wh2"}
    )
    await move(client, "purchase", 1, "open")

    first = (
        await client.get("/api/v1/purchase-orders", params={"limit": 2}, headers=VIEWER)
    ).json()
    assert [order["number"] for order in first["items"]] == ["PO-3", "PO-2"]
    assert first["items"][0]["line_count"] == 1
    rest = await client.get(
        "/api/v1/purchase-orders", params={"cursor": first["next_cursor"]}, headers=VIEWER
    )
    assert [order["number"] for order in rest.json()["items"]] == ["PO-1"]
    assert rest.json()["next_cursor"] is None

    async def numbers(kind: str, key: str = VIEWER_KEY, **params: str) -> list[str]:
        response = await client.get(f"/api/v1/{kind}-orders", params=params, headers=bearer(key))
        assert response.status_code == 200, response.text
        return [order["number"] for order in response.json()["items"]]

    assert await numbers("purchase", status="open") == ["PO-1"]
    assert await numbers("purchase", site="wh1") == ["PO-3", "PO-1"]
    assert await numbers("purchase", gtin=GTIN_A[1:] if GTIN_A.startswith("0") else GTIN_A) == [
        "PO-3",
        "PO-2",
        "PO-1",
    ]
    assert await numbers("purchase", sku="BOLT") == []
    assert await numbers("purchase", number="PO-2") == ["PO-2"]
    assert await numbers("purchase", WH2_VIEWER_KEY) == ["PO-2"]
    assert await numbers("transfer", WH2_VIEWER_KEY) == ["TO-5"]  # goes to wh2

    wh2 = bearer(WH2_VIEWER_KEY)
    assert (await client.get("/api/v1/purchase-orders/1", headers=wh2)).status_code == 404
    assert (
        await client.get("/api/v1/purchase-orders", params={"site": "wh1"}, headers=wh2)
    ).status_code == 403
    wh1 = bearer(WH1_OPERATOR_KEY)
    body = {"number": "PO-8", "location": "wh2.receiving"}
    assert (await client.post("/api/v1/purchase-orders", json=body, headers=wh1)).status_code == 403
    touch = await client.patch(
        f"/api/v1/transfer-orders/{transfer['id']}", json={"note": "x"}, headers=wh1
    )
    assert touch.status_code == 403
    bad = await client.get("/api/v1/purchase-orders", params={"cursor": "x-y"}, headers=VIEWER)
    assert bad.status_code == 400


async def test_the_orders_revision_goes_down_and_up_on_its_own(fresh_database_url: str) -> None:
    # Down to the initial schema (which runs the orders downgrade), then up the other
    # branches only: the orders tables and units.site are gone, the rest is there.
    store = Store.open(DatabaseSettings(url=fresh_database_url))
    try:
        await store.migrate()
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0001"))
            for other in ("0002", "0004"):
                await conn.run_sync(lambda c, rev=other: command.upgrade(alembic_config(c), rev))
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
            unit_columns = {
                column["name"]
                for column in await conn.run_sync(lambda c: sa.inspect(c).get_columns("units"))
            }
        assert not tables & {"orders", "order_lines", "order_positions"}
        assert {"items", "ledger"} <= tables
        assert "site" not in unit_columns
        await store.migrate()
        async with store.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
        assert {"orders", "order_lines", "order_positions"} <= tables
    finally:
        await store.close()
