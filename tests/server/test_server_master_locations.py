"""Locations (the site > zone > bin tree) through the API, and keys restricted to sites."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from server_helpers import (
    ADMIN_KEY,
    GTIN_A,
    GTIN_B,
    OPERATOR_KEY,
    VIEWER_KEY,
    WH1_ADMIN_KEY,
    WH1_OPERATOR_KEY,
    WH2_VIEWER_KEY,
    Batches,
    bearer,
    make_scoped_settings,
    sgtin,
)

from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor

ADMIN = bearer(ADMIN_KEY)
VIEWER = bearer(VIEWER_KEY)
WH1_ADMIN = bearer(WH1_ADMIN_KEY)
WH2_VIEWER = bearer(WH2_VIEWER_KEY)


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_scoped_settings(database_url)


async def post(
    client: httpx.AsyncClient, location: str, name: str | None = None, key: str = ADMIN_KEY
) -> httpx.Response:
    return await client.post(
        "/api/v1/locations", headers=bearer(key), json={"id": location, "name": name}
    )


async def ids(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/api/v1/locations", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [location["id"] for location in response.json()["items"]]


async def test_the_location_tree_is_built_top_down(client: httpx.AsyncClient) -> None:
    for location, name in (("wh1", "Main"), ("wh1.a", "Aisle A"), ("wh1.a.1", None)):
        response = await post(client, location, name)
        assert response.status_code == 201, response.text
    orphan = await post(client, "wh1.b.1")
    again = await post(client, "wh1.a")
    bin_ = (await client.get("/api/v1/locations/wh1.a.1", headers=VIEWER)).json()

    assert orphan.status_code == 422
    assert orphan.json() == {
        "detail": "id: parent location 'wh1.b' does not exist; create it first",
        "field": "id",
    }
    assert again.status_code == 409
    assert (bin_["kind"], bin_["parent"], bin_["name"]) == ("bin", "wh1.a", None)
    assert await ids(client, VIEWER, kind="zone") == ["wh1.a"]
    assert await ids(client, VIEWER, under="wh1.a") == ["wh1.a", "wh1.a.1"]

    renamed = await client.patch("/api/v1/locations/wh1.a.1", headers=ADMIN, json={"name": "A1"})
    assert renamed.json()["name"] == "A1"
    has_children = await client.delete("/api/v1/locations/wh1.a", headers=ADMIN)
    assert has_children.status_code == 409
    assert "child locations" in has_children.json()["detail"]
    assert (await client.delete("/api/v1/locations/wh1.a.1", headers=ADMIN)).status_code == 204
    assert (await client.get("/api/v1/locations/wh1.a.1", headers=VIEWER)).status_code == 404


async def test_locations_that_held_stock_are_never_deleted(
    client: httpx.AsyncClient, ingestor: Ingestor, batches: Batches
) -> None:
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(1))]))
    # Ingest created the receiving location and its site on first use.
    assert await ids(client, VIEWER) == ["wh1", "wh1.receiving"]
    refused = await client.delete("/api/v1/locations/wh1.receiving", headers=ADMIN)
    assert refused.status_code == 409
    assert "ledger rows" in refused.json()["detail"]


async def test_pages_walk_every_location_once(client: httpx.AsyncClient) -> None:
    wanted = ["s1", "s1.z1", "s1.z1.b1", "s1.z1.b2", "s1.z2", "s2", "s2.z1"]
    for location in wanted:
        assert (await post(client, location)).status_code == 201
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):  # bounded: 3 pages expected
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        body = (await client.get("/api/v1/locations", headers=VIEWER, params=params)).json()
        seen += [location["id"] for location in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == wanted


async def test_keys_restricted_to_sites_see_and_change_only_those(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    wh1, wh2 = Batches(), Batches(site="wh2", gateway="gw2")
    await ingestor.handle(wh1.topic, wh1.payload([wh1.event(epc=sgtin(1))]))
    await ingestor.handle(
        wh2.topic, wh2.payload([wh2.event(gtin=GTIN_B, qty=5, read_point="wh2.dock.1")])
    )

    # Locations.
    assert await ids(client, WH2_VIEWER) == ["wh2", "wh2.receiving"]
    assert (await client.get("/api/v1/locations/wh1", headers=WH2_VIEWER)).status_code == 403
    assert (await post(client, "wh1.quarantine", key=WH1_ADMIN_KEY)).status_code == 201
    foreign = await post(client, "wh2.quarantine", key=WH1_ADMIN_KEY)
    assert foreign.status_code == 403
    assert "restricted to sites ['wh1']" in foreign.json()["detail"]

    # Stock, movements, units: narrowed to the key's sites; naming another site is 403.
    stock = (await client.get("/api/v1/stock", headers=WH2_VIEWER)).json()
    assert [(r["sku"], r["location"]) for r in stock["items"]] == [(GTIN_B, "wh2.receiving")]
    elsewhere = await client.get("/api/v1/stock", headers=WH2_VIEWER, params={"location": "wh1"})
    assert elsewhere.status_code == 403
    moves = (await client.get("/api/v1/movements", headers=WH2_VIEWER)).json()["items"]
    assert [m["sku"] for m in moves] == [GTIN_B]
    assert (await client.get(f"/api/v1/units/{sgtin(1)}", headers=WH2_VIEWER)).status_code == 404
    unit = await client.get(f"/api/v1/units/{sgtin(1)}", headers=bearer(WH1_OPERATOR_KEY))
    assert unit.status_code == 200
    assert unit.json()["item"]["sku"] == GTIN_A

    # Dead letters cannot all be put down to a site: only keys for all sites read them.
    letters = await client.get("/api/v1/dead-letters", headers=bearer(WH1_OPERATOR_KEY))
    assert letters.status_code == 403
    assert (await client.get("/api/v1/dead-letters", headers=bearer(OPERATOR_KEY))).is_success
