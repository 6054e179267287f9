"""Items and item categories through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from server_helpers import (
    ADMIN_KEY,
    GTIN_A,
    OPERATOR_KEY,
    VIEWER_KEY,
    WH1_ADMIN_KEY,
    Batches,
    Probe,
    bearer,
    make_scoped_settings,
    sgtin,
)

from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor

ADMIN = bearer(ADMIN_KEY)
VIEWER = bearer(VIEWER_KEY)
GTIN_13 = "4006381333931"  # a real EAN-13


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_scoped_settings(database_url)


async def create(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, headers=ADMIN, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_an_item_is_created_read_changed_and_deleted(client: httpx.AsyncClient) -> None:
    await create(client, "/api/v1/item-categories", {"code": "bev", "name": "Beverages"})
    created = await create(
        client,
        "/api/v1/items",
        {
            "sku": "COLA-330",
            "gtin": GTIN_13,
            "name": "Cola 330 ml",
            "category": "bev",
            "inventory_type": "merchandise",
            "reorder_point": 24,
            "reorder_quantity": 96,
        },
    )
    assert created["gtin"] == GTIN_13.zfill(14)
    assert (created["unit"], created["reviewed"]) == ("ea", True)

    read = await client.get("/api/v1/items/COLA-330", headers=VIEWER)
    assert read.json() == created

    changed = await client.patch(
        "/api/v1/items/COLA-330",
        headers=ADMIN,
        json={"sku": "COLA-330-CAN", "reorder_point": None, "unit": "can"},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["sku"], body["reorder_point"], body["unit"], body["name"]) == (
        "COLA-330-CAN",
        None,
        "can",
        "Cola 330 ml",
    )
    assert (await client.get("/api/v1/items/COLA-330", headers=VIEWER)).status_code == 404

    deleted = await client.delete("/api/v1/items/COLA-330-CAN", headers=ADMIN)
    assert deleted.status_code == 204
    assert (await client.get("/api/v1/items/COLA-330-CAN", headers=VIEWER)).status_code == 404


BAD_ITEMS: list[tuple[dict[str, Any], str | None]] = [
    ({"sku": "A-1", "name": "x", "gtin": "4006381333932"}, "check digit"),
    ({"sku": "A-1", "name": "x", "gtin": "00000000"}, "all zeros"),
    ({"sku": "A-1", "name": "x", "category": "nope"}, "no item category 'nope'"),
    ({"sku": "A-1", "name": "x", "inventory_type": "gold"}, None),
    ({"sku": "A 1", "name": "x"}, None),
    ({"sku": "A-1", "name": "x", "reorder_point": -1}, None),
    ({"sku": "A-1", "name": "x", "colour": "red"}, None),
    ({"sku": "A-1", "name": "bad\x00name"}, None),
    ({"sku": "A-1"}, None),
]


async def test_bad_items_are_refused_with_a_reason(client: httpx.AsyncClient, probe: Probe) -> None:
    for body, reason in BAD_ITEMS:
        response = await client.post("/api/v1/items", headers=ADMIN, json=body)
        assert response.status_code == 422, body
        detail = response.json()["detail"]
        assert detail, body
        if reason is not None:
            assert reason in str(detail), body
    assert await probe.items() == {}


async def test_sku_and_gtin_are_unique(client: httpx.AsyncClient) -> None:
    await create(client, "/api/v1/items", {"sku": "A-1", "name": "A", "gtin": GTIN_13})
    await create(client, "/api/v1/items", {"sku": "B-1", "name": "B"})

    same_sku = await client.post("/api/v1/items", headers=ADMIN, json={"sku": "A-1", "name": "x"})
    same_gtin = await client.post(
        "/api/v1/items", headers=ADMIN, json={"sku": "C-1", "name": "x", "gtin": GTIN_13}
    )
    taken_sku = await client.patch("/api/v1/items/B-1", headers=ADMIN, json={"sku": "A-1"})
    taken_gtin = await client.patch("/api/v1/items/B-1", headers=ADMIN, json={"gtin": GTIN_13})
    null_name = await client.patch("/api/v1/items/B-1", headers=ADMIN, json={"name": None})

    assert [r.status_code for r in (same_sku, same_gtin, taken_sku, taken_gtin)] == [409] * 4
    assert "belongs to item 'A-1'" in same_gtin.json()["detail"]
    assert null_name.status_code == 422
    assert null_name.json() == {"detail": "name: cannot be null", "field": "name"}


async def test_items_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    await create(client, "/api/v1/item-categories", {"code": "tools", "name": "Tools"})
    for n in range(7):
        await create(
            client,
            "/api/v1/items",
            {
                "sku": f"SKU-{n}",
                "name": f"Hammer {n}" if n % 2 else f"Saw {n}",
                "category": "tools" if n < 3 else None,
                "inventory_type": "mro" if n == 6 else None,
            },
        )

    async def listing(**params: Any) -> dict[str, Any]:
        response = await client.get("/api/v1/items", headers=VIEWER, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):  # bounded: 3 pages expected
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = await listing(**params)
        seen += [item["sku"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"SKU-{n}" for n in range(7)]
    assert [i["sku"] for i in (await listing(category="tools"))["items"]] == [
        "SKU-0",
        "SKU-1",
        "SKU-2",
    ]
    assert [i["sku"] for i in (await listing(search="hAmMeR"))["items"]] == [
        "SKU-1",
        "SKU-3",
        "SKU-5",
    ]
    assert [i["sku"] for i in (await listing(inventory_type="mro"))["items"]] == ["SKU-6"]
    # LIKE wildcards in the search are literal characters.
    assert (await listing(search="%"))["items"] == []
    bad = await client.get("/api/v1/items", headers=VIEWER, params={"cursor": "@@"})
    assert bad.status_code == 422


async def test_ingest_created_items_are_listed_unreviewed_and_can_be_reviewed(
    client: httpx.AsyncClient, ingestor: Ingestor, batches: Batches
) -> None:
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(1))]))
    unreviewed = (
        await client.get("/api/v1/items", headers=VIEWER, params={"reviewed": "false"})
    ).json()["items"]
    assert [(i["sku"], i["gtin"], i["unit"]) for i in unreviewed] == [(GTIN_A, GTIN_A, None)]

    reviewed = await client.patch(
        f"/api/v1/items/{GTIN_A}",
        headers=ADMIN,
        json={"sku": "WIDGET", "name": "Widget", "reviewed": True, "unit": "ea"},
    )
    assert reviewed.status_code == 200, reviewed.text
    by_gtin = (await client.get("/api/v1/items", headers=VIEWER, params={"gtin": GTIN_A})).json()
    assert [(i["sku"], i["reviewed"]) for i in by_gtin["items"]] == [("WIDGET", True)]
    # The unit kept its item: it is the same row, renamed.
    unit = (await client.get(f"/api/v1/units/{sgtin(1)}", headers=VIEWER)).json()
    assert unit["item"]["sku"] == "WIDGET"
    # It has moved stock, so it cannot be deleted.
    refused = await client.delete("/api/v1/items/WIDGET", headers=ADMIN)
    assert refused.status_code == 409
    assert "ledger rows" in refused.json()["detail"]


async def test_only_admins_for_all_sites_change_items(client: httpx.AsyncClient) -> None:
    body = {"sku": "A-1", "name": "A"}
    for key, status in (
        (VIEWER_KEY, 403),
        (OPERATOR_KEY, 403),
        (WH1_ADMIN_KEY, 403),
        ("no-such-key-0123456789", 401),
    ):
        response = await client.post("/api/v1/items", headers=bearer(key), json=body)
        assert response.status_code == status, key
        assert response.json()["detail"]
    scoped = await client.post("/api/v1/items", headers=bearer(WH1_ADMIN_KEY), json=body)
    assert "restricted to sites" in scoped.json()["detail"]
    assert (await client.get("/api/v1/items", headers=bearer(WH1_ADMIN_KEY))).status_code == 200


async def test_categories_are_managed_and_in_use_ones_stay(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    await create(client, "/api/v1/item-categories", {"code": "raw", "name": "Raw"})
    await create(client, "/api/v1/item-categories", {"code": "pack", "name": "Packaging"})
    await create(client, "/api/v1/items", {"sku": "BOX-1", "name": "Box", "category": "pack"})

    duplicate = await client.post(
        "/api/v1/item-categories", headers=ADMIN, json={"code": "raw", "name": "x"}
    )
    renamed = await client.patch(
        "/api/v1/item-categories/raw", headers=ADMIN, json={"name": "Raw materials"}
    )
    in_use = await client.delete("/api/v1/item-categories/pack", headers=ADMIN)
    unused = await client.delete("/api/v1/item-categories/raw", headers=ADMIN)
    missing = await client.get("/api/v1/item-categories/raw", headers=VIEWER)
    listing = (await client.get("/api/v1/item-categories", headers=VIEWER)).json()

    assert duplicate.status_code == 409
    assert renamed.json()["name"] == "Raw materials"
    assert in_use.status_code == 409
    assert "still has items" in in_use.json()["detail"]
    assert unused.status_code == 204
    assert missing.status_code == 404
    assert [c["code"] for c in listing["items"]] == ["pack"]
    assert (await probe.items())["BOX-1"]["category"] == "pack"
