"""CSV import and export of items and locations: all or nothing, errors by row and field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from server_helpers import (
    ADMIN_KEY,
    VIEWER_KEY,
    WH1_ADMIN_KEY,
    Probe,
    bearer,
    make_scoped_settings,
)

from server.commands.csv_import import MAX_IMPORT_BYTES, MAX_IMPORT_ROWS
from server.config.settings import ServerSettings
from server.store.schema import core as schema

ADMIN = bearer(ADMIN_KEY)
VIEWER = bearer(VIEWER_KEY)
CSV = {"Content-Type": "text/csv"}
GTIN_13 = "4006381333931"


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_scoped_settings(database_url)


async def upload(
    client: httpx.AsyncClient, path: str, text: str | bytes, key: str = ADMIN_KEY, **params: Any
) -> httpx.Response:
    body = text.encode() if isinstance(text, str) else text
    return await client.post(path, headers=bearer(key) | CSV, content=body, params=params)


async def test_items_import_all_or_nothing_and_round_trip(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    await client.post(
        "/api/v1/item-categories", headers=ADMIN, json={"code": "bev", "name": "Beverages"}
    )
    await client.post("/api/v1/items", headers=ADMIN, json={"sku": "OLD-1", "name": "Old"})
    first = (
        "sku,gtin,name,category,unit,inventory_type,reorder_point,reorder_quantity,reviewed\r\n"
        f'COLA,{GTIN_13},"Cola, 330 ml",bev,can,merchandise,24,96,\r\n'
        'OLD-1,,"Old, renamed",,,,,,false\r\n'
        "\r\n"
    )
    dry = await upload(client, "/api/v1/items.csv", first, dry_run="true")
    assert dry.json() == {"created": 1, "updated": 1, "dry_run": True}
    assert set(await probe.items()) == {"OLD-1"}

    applied = await upload(client, "/api/v1/items.csv", first)
    assert applied.status_code == 200, applied.text
    assert applied.json() == {"created": 1, "updated": 1, "dry_run": False}
    stored = await probe.items()
    cola = stored["COLA"]
    assert (cola["gtin"], cola["name"], cola["unit"], cola["reorder_point"]) == (
        GTIN_13.zfill(14),
        "Cola, 330 ml",
        "can",
        24,
    )
    assert cola["reviewed"] is True  # an empty cell is the default
    assert (stored["OLD-1"]["name"], stored["OLD-1"]["reviewed"]) == ("Old, renamed", False)
    # Each item the import created or changed is in the audit trail; the dry run left none.
    trail = await client.get(
        "/api/v1/audit/masterdata", headers=ADMIN, params={"entity": "item", "limit": 10}
    )
    changes = {(c["key"], c["action"]): c for c in trail.json()["items"]}
    assert set(changes) == {("COLA", "create"), ("OLD-1", "update"), ("OLD-1", "create")}
    renamed = changes[("OLD-1", "update")]
    assert (renamed["before"]["name"], renamed["after"]["name"]) == ("Old", "Old, renamed")
    assert changes[("COLA", "create")]["after"]["unit"] == "can"

    exported = await client.get("/api/v1/items.csv", headers=VIEWER)
    assert exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.splitlines()
    assert lines[0] == (
        "sku,gtin,name,category,unit,inventory_type,reorder_point,reorder_quantity,reviewed"
    )
    assert lines[1] == f'COLA,{GTIN_13.zfill(14)},"Cola, 330 ml",bev,can,merchandise,24,96,true'
    # Export, then import unchanged: every row is an update, nothing else changes.
    again = await upload(client, "/api/v1/items.csv", exported.content)
    assert again.json() == {"created": 0, "updated": 2, "dry_run": False}
    assert {sku: row["name"] for sku, row in (await probe.items()).items()} == {
        "COLA": "Cola, 330 ml",
        "OLD-1": "Old, renamed",
    }


async def test_item_rows_with_errors_apply_nothing_and_name_row_and_field(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    await client.post(
        "/api/v1/items", headers=ADMIN, json={"sku": "HAS-GTIN", "name": "x", "gtin": GTIN_13}
    )
    text = (
        "sku,name,gtin,category,reorder_point\n"
        "GOOD-1,Good,,,\n"  # row 2: fine, but must not be applied
        "BAD 2,Bad sku,,,\n"  # row 3
        "GOOD-3,,4006381333932,,\n"  # row 4: name missing, check digit wrong
        f"GOOD-4,Taken GTIN,{GTIN_13},,\n"  # row 5
        "GOOD-5,Unknown category,,nope,-5\n"  # row 6
        "GOOD-1,Twice,,,\n"  # row 7
        "GOOD-8,Short row\n"  # row 8
    )
    response = await upload(client, "/api/v1/items.csv", text)
    assert response.status_code == 422
    body = response.json()
    assert "nothing was applied" in body["detail"]
    found = {(e["row"], e["field"]) for e in body["errors"]}
    assert found == {
        (3, "sku"),
        (4, "name"),
        (4, "gtin"),
        (5, "gtin"),
        (6, "reorder_point"),
        (7, "sku"),
        (8, None),
    }
    # The category of row 6 is checked only once the row's fields are valid.
    messages = {(e["row"], e["field"]): e["message"] for e in body["errors"]}
    assert "check digit" in messages[(4, "gtin")]
    assert "belongs to item 'HAS-GTIN'" in messages[(5, "gtin")]
    assert "also on row 2" in messages[(7, "sku")]
    assert set(await probe.items()) == {"HAS-GTIN"}


UNUSABLE_FILES: list[tuple[bytes, int, str]] = [
    (b"", 422, "empty"),
    (b"sku,name,colour\nA,B,red\n", 422, "unknown column"),
    (b"name\nx\n", 422, "required column is missing"),
    (b"sku,name,sku\n", 422, "more than once"),
    (b"sku,name\n\xff\xfe,x\n", 422, "not UTF-8"),
    (b'sku,name\n"A,x\n', 422, "not valid CSV"),
    (b"sku,name\nA,B\x00\n", 422, "NUL"),
    (b"sku,name\n" + b"S,n\n" * (MAX_IMPORT_ROWS + 1), 422, "rows"),
    (b"x" * (MAX_IMPORT_BYTES + 1), 413, "larger than"),
]


async def test_files_that_are_not_usable_are_refused_with_a_reason(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    for payload, status, needle in UNUSABLE_FILES:
        response = await upload(client, "/api/v1/items.csv", payload)
        assert response.status_code == status, (payload[:40], response.text)
        assert needle in str(response.json()), (payload[:40], response.json())
    assert await probe.items() == {}


async def test_imports_need_text_csv_and_the_right_key(client: httpx.AsyncClient) -> None:
    json_body = await client.post(
        "/api/v1/items.csv", headers=ADMIN, json={"sku": "A", "name": "B"}
    )
    assert json_body.status_code == 415
    scoped = await upload(client, "/api/v1/items.csv", "sku,name\nA,B\n", key=WH1_ADMIN_KEY)
    assert scoped.status_code == 403
    viewer = await upload(client, "/api/v1/locations.csv", "id\nwh1\n", key=VIEWER_KEY)
    assert viewer.status_code == 403


async def test_locations_import_builds_the_tree_in_any_row_order(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    text = "id,name\nwh1.a.1,Bin A1\nwh1.a,Aisle A\nwh1,Main\n"
    created = await upload(client, "/api/v1/locations.csv", text)
    assert created.json() == {"created": 3, "updated": 0, "dry_run": False}

    exported = await client.get("/api/v1/locations.csv", headers=VIEWER)
    assert exported.text.splitlines() == [
        "id,name,kind,parent",
        "wh1,Main,site,",
        "wh1.a,Aisle A,zone,wh1",
        "wh1.a.1,Bin A1,bin,wh1.a",
    ]
    renamed = exported.text.replace("Bin A1", "Bin A-1")
    assert (await upload(client, "/api/v1/locations.csv", renamed)).json()["updated"] == 3
    trail = await client.get(
        "/api/v1/audit/masterdata", headers=VIEWER, params={"entity": "location", "key": "wh1.a.1"}
    )
    assert [
        (c["action"], (c["before"] or {}).get("name"), c["after"]["name"])
        for c in trail.json()["items"]
    ] == [("update", "Bin A1", "Bin A-1"), ("create", None, "Bin A1")]

    bad = (
        "id,name,kind,parent\n"
        "wh1.b.1,,bin,wh1.b\n"  # row 2: parent missing
        "wh1.c,,bin,wh1\n"  # row 3: wrong kind
        "wh1..x,,,\n"  # row 4: not a location id
        "wh2.a,,zone,wh2\n"  # row 5: wh2 missing (and, for a wh1 key, outside its sites)
    )
    refused = await upload(client, "/api/v1/locations.csv", bad)
    assert refused.status_code == 422
    assert {(e["row"], e["field"]) for e in refused.json()["errors"]} == {
        (2, "id"),
        (3, "kind"),
        (4, "id"),
        (5, "id"),
    }
    scoped = await upload(client, "/api/v1/locations.csv", "id\nwh2\n", key=WH1_ADMIN_KEY)
    assert scoped.json()["errors"] == [
        {"row": 2, "field": "id", "message": "site 'wh2' is outside this key's sites"}
    ]
    locations = await probe.rows(schema.locations)
    assert sorted(row["id"] for row in locations) == ["wh1", "wh1.a", "wh1.a.1"]
    assert {row["id"]: row["name"] for row in locations}["wh1.a.1"] == "Bin A-1"
