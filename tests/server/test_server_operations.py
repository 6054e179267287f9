"""Stock operations from the API (adjustments, transfers, reversals) as ledger rows, on
SQLite and PostgreSQL; balances always agree with the ledger afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from server_helpers import (
    ADMIN_KEY,
    GTIN_A,
    OPERATOR_KEY,
    VIEWER_KEY,
    WH1_OPERATOR_KEY,
    Batches,
    Probe,
    bearer,
    make_scoped_settings,
    sgtin,
)

from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.store.check import check_ledger
from server.store.database import Store
from wire.models import now_utc

ADMIN = bearer(ADMIN_KEY)
OPERATOR = bearer(OPERATOR_KEY)
VIEWER = bearer(VIEWER_KEY)
LOCATIONS = ("wh1", "wh1.a", "wh1.a.1", "wh1.a.2", "wh2", "wh2.b")


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    # wh1 refuses negative stock; wh2 takes the default (allow, with an alert).
    return make_scoped_settings(
        database_url, operations={"negative_stock_sites": {"wh1": "refuse"}}
    )


@pytest.fixture
async def client(store: Store, settings: ServerSettings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        for location in LOCATIONS:
            created = await http.post("/api/v1/locations", headers=ADMIN, json={"id": location})
            assert created.status_code == 201, created.text
        for sku in ("BOLT", "NUT"):
            created = await http.post(
                "/api/v1/items", headers=ADMIN, json={"sku": sku, "name": sku}
            )
            assert created.status_code == 201, created.text
        yield http


async def op(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str = OPERATOR_KEY
) -> httpx.Response:
    return await client.post(f"/api/v1/{path}", headers=bearer(key), json=body)


async def ok(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str = OPERATOR_KEY
) -> dict[str, Any]:
    response = await op(client, path, body, key)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def refused(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, needle: str
) -> None:
    response = await op(client, path, body)
    assert response.status_code == status, response.text
    assert needle in str(response.json()["detail"]), response.json()


async def receive_units(ingestor: Ingestor, *serials: int) -> None:
    batches = Batches()
    events = [batches.event(epc=sgtin(serial)) for serial in serials]
    result = await ingestor.handle(batches.topic, batches.payload(events))
    assert result.applied == len(serials)


async def test_adjustments_of_quantities_follow_their_reason(
    client: httpx.AsyncClient, probe: Probe, store: Store
) -> None:
    found = await ok(
        client,
        "adjustments",
        {"reason": "found", "sku": "BOLT", "location": "wh1.a.1", "quantity": 10},
    )
    row = found["movements"][0]
    assert (row["kind"], row["reason"], row["to_location"], row["quantity"]) == (
        "count_adjustment",
        "found",
        "wh1.a.1",
        10,
    )
    assert (row["actor"], found["replayed"]) == ("olga", False)
    lost = await ok(
        client,
        "adjustments",
        {
            "reason": "lost",
            "sku": "BOLT",
            "location": "wh1.a.1",
            "quantity": -3,
            "note": "bin torn",
        },
    )
    assert [(m["kind"], m["reason"], m["from_location"], m["note"]) for m in lost["movements"]] == [
        ("loss", "lost", "wh1.a.1", "bin torn")
    ]
    assert (await probe.balances())[("BOLT", "wh1.a.1")] == 7

    base = {"sku": "BOLT", "location": "wh1.a.1"}
    await refused(
        client, "adjustments", base | {"reason": "stolen", "quantity": 2}, 422, "negative"
    )
    await refused(
        client, "adjustments", base | {"reason": "found", "quantity": -2}, 422, "positive"
    )
    await refused(client, "adjustments", base | {"reason": "lost", "quantity": 0}, 422, "not 0")
    await refused(
        client, "adjustments", base | {"reason": "correction", "quantity": 1}, 422, "note"
    )
    await refused(client, "adjustments", base | {"reason": "damaged", "quantity": -8}, 409, "has 7")
    await refused(
        client,
        "adjustments",
        base | {"reason": "expired", "quantity": -1, "location": "wh9"},
        422,
        "no location 'wh9'",
    )
    await refused(
        client,
        "adjustments",
        {"reason": "found", "sku": "NOPE", "location": "wh1", "quantity": 1},
        422,
        "no item",
    )
    future = (now_utc() + timedelta(hours=1)).isoformat()
    await refused(
        client,
        "adjustments",
        base | {"reason": "expired", "quantity": -1, "event_time": future},
        422,
        "future",
    )
    await refused(
        client, "adjustments", {"reason": "found", "location": "wh1"}, 422, "sku, gtin or epc"
    )
    await ok(
        client,
        "adjustments",
        base | {"reason": "correction", "quantity": -2, "note": "recount: 5, not 7"},
    )
    assert (await probe.balances())[("BOLT", "wh1.a.1")] == 5
    assert (
        await op(client, "adjustments", base | {"reason": "found", "quantity": 1}, VIEWER_KEY)
    ).status_code == 403
    assert await check_ledger(store) == []


async def test_adjustments_of_units_set_their_status(
    client: httpx.AsyncClient, ingestor: Ingestor, probe: Probe, store: Store
) -> None:
    await receive_units(ingestor, 1)
    lost = await ok(client, "adjustments", {"reason": "stolen", "epc": sgtin(1)})
    assert [(m["from_location"], m["quantity"], m["epc"]) for m in lost["movements"]] == [
        ("wh1.receiving", 1, sgtin(1))
    ]
    unit = (await probe.units())[sgtin(1)]
    assert (unit["status"], unit["location_id"]) == ("missing", None)
    await refused(
        client, "adjustments", {"reason": "lost", "epc": sgtin(1)}, 409, "missing, not in stock"
    )
    await refused(
        client, "adjustments", {"reason": "found", "epc": sgtin(1)}, 422, "where the unit was found"
    )

    await ok(client, "adjustments", {"reason": "found", "epc": sgtin(1), "location": "wh1.a.2"})
    unit = (await probe.units())[sgtin(1)]
    assert (unit["status"], unit["location_id"]) == ("in_stock", "wh1.a.2")
    await refused(
        client,
        "adjustments",
        {"reason": "found", "epc": sgtin(1), "location": "wh1.a.2"},
        409,
        "in stock at wh1.a.2",
    )
    await refused(
        client,
        "adjustments",
        {"reason": "damaged", "epc": sgtin(1), "location": "wh1.a.1"},
        409,
        "not at wh1.a.1",
    )
    await refused(
        client,
        "adjustments",
        {"reason": "damaged", "epc": sgtin(1), "quantity": 5},
        422,
        "exactly 1",
    )

    # A unit never seen: its item comes from the GTIN in its EPC, or from the request.
    await ok(client, "adjustments", {"reason": "found", "epc": sgtin(7), "location": "wh1.a.2"})
    assert (await probe.units())[sgtin(7)]["status"] == "in_stock"
    stranger = sgtin(1, "999999")
    await refused(
        client,
        "adjustments",
        {"reason": "found", "epc": stranger, "location": "wh1"},
        422,
        "no item has its GTIN",
    )
    await ok(
        client, "adjustments", {"reason": "found", "epc": stranger, "sku": "NUT", "location": "wh1"}
    )
    await refused(
        client,
        "adjustments",
        {"reason": "lost", "epc": stranger, "sku": "BOLT"},
        409,
        "is of item 'NUT'",
    )
    balances = await probe.balances()
    assert (balances[(GTIN_A, "wh1.receiving")], balances[(GTIN_A, "wh1.a.2")]) == (0, 2)
    assert await check_ledger(store) == []


async def test_where_negative_stock_is_allowed_it_applies_and_is_alerted_until_made_good(
    client: httpx.AsyncClient, probe: Probe, store: Store
) -> None:
    def negative(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {a["subject"]: a for a in alerts if a["kind"] == "negative_stock"}

    base = {"sku": "BOLT", "location": "wh2.b"}
    await ok(client, "adjustments", base | {"reason": "found", "quantity": 2})
    # wh2 allows: three stolen of two on hand applies, and says so.
    await ok(client, "adjustments", base | {"reason": "stolen", "quantity": -3})
    assert (await probe.balances())[("BOLT", "wh2.b")] == -1
    [alert] = negative(await probe.alerts()).values()
    assert (alert["subject"], alert["closed_at"]) == ("wh2.b/BOLT", None)
    # wh1 refuses: the same takes nothing there.
    await ok(
        client,
        "adjustments",
        {"sku": "BOLT", "location": "wh1.a.1", "reason": "found"} | {"quantity": 1},
    )
    await refused(
        client,
        "transfers",
        {"sku": "BOLT", "from_location": "wh1.a.1", "to_location": "wh2.b", "quantity": 2},
        409,
        "negative_stock is 'refuse' at site wh1",
    )
    # A transfer in brings wh2.b back to zero: the alert clears.
    await ok(
        client,
        "transfers",
        {"sku": "BOLT", "from_location": "wh1.a.1", "to_location": "wh2.b", "quantity": 1},
    )
    balances = await probe.balances()
    assert (balances[("BOLT", "wh1.a.1")], balances[("BOLT", "wh2.b")]) == (0, 0)
    assert negative(await probe.alerts())["wh2.b/BOLT"]["closed_at"] is not None
    assert await check_ledger(store) == []


async def test_transfers_move_quantities_and_units_also_between_sites(
    client: httpx.AsyncClient, ingestor: Ingestor, probe: Probe, store: Store
) -> None:
    await ok(
        client,
        "adjustments",
        {"reason": "found", "sku": "NUT", "location": "wh1.a.1", "quantity": 5},
    )
    moved = await ok(
        client,
        "transfers",
        {"sku": "NUT", "from_location": "wh1.a.1", "to_location": "wh2.b", "quantity": 3},
    )
    assert [(m["kind"], m["from_location"], m["to_location"]) for m in moved["movements"]] == [
        ("transfer", "wh1.a.1", "wh2.b")
    ]
    balances = await probe.balances()
    assert (balances[("NUT", "wh1.a.1")], balances[("NUT", "wh2.b")]) == (2, 3)

    qty = {"sku": "NUT", "from_location": "wh1.a.1"}
    await refused(client, "transfers", qty | {"to_location": "wh2.b", "quantity": 3}, 409, "has 2")
    await refused(
        client, "transfers", qty | {"to_location": "wh1.a.1", "quantity": 1}, 422, "same as"
    )
    await refused(
        client, "transfers", qty | {"to_location": "wh3", "quantity": 1}, 422, "no location 'wh3'"
    )
    await refused(
        client,
        "transfers",
        {"sku": "NUT", "to_location": "wh2", "quantity": 1},
        422,
        "from_location",
    )

    await receive_units(ingestor, 1)
    await ok(client, "transfers", {"epc": sgtin(1), "to_location": "wh1.a.2"})
    unit = (await probe.units())[sgtin(1)]
    assert (unit["status"], unit["location_id"]) == ("in_stock", "wh1.a.2")
    await refused(
        client,
        "transfers",
        {"epc": sgtin(1), "from_location": "wh1.a.1", "to_location": "wh2"},
        409,
        "is at wh1.a.2",
    )
    await refused(client, "transfers", {"epc": sgtin(9), "to_location": "wh2"}, 409, "never seen")
    assert await check_ledger(store) == []


async def test_reversals_cancel_once_and_never_a_reversal(
    client: httpx.AsyncClient, probe: Probe, store: Store
) -> None:
    await ok(
        client,
        "adjustments",
        {"reason": "found", "sku": "BOLT", "location": "wh1.a.1", "quantity": 4},
    )
    moved = await ok(
        client,
        "transfers",
        {"sku": "BOLT", "from_location": "wh1.a.1", "to_location": "wh2.b", "quantity": 4},
    )
    original = moved["movements"][0]["id"]

    reversed_ = await ok(client, "reversals", {"movement_id": original, "note": "wrong pallet"})
    row = reversed_["movements"][0]
    assert (
        row["kind"],
        row["from_location"],
        row["to_location"],
        row["quantity"],
        row["reverses"],
    ) == (
        "transfer",
        "wh2.b",
        "wh1.a.1",
        4,
        original,
    )
    balances = await probe.balances()
    assert (balances[("BOLT", "wh1.a.1")], balances[("BOLT", "wh2.b")]) == (4, 0)

    await refused(
        client,
        "reversals",
        {"movement_id": original, "note": "again"},
        409,
        f"by movement {row['id']}",
    )
    await refused(
        client, "reversals", {"movement_id": row["id"], "note": "undo"}, 409, "itself the reversal"
    )
    await refused(client, "reversals", {"movement_id": 10**9, "note": "?"}, 404, "no movement")
    await refused(client, "reversals", {"movement_id": original}, 422, "note")
    ledger = await probe.ledger()
    assert len(ledger) == 3  # found, transfer, one reversal: nothing edited or deleted
    assert [r["reverses"] for r in ledger] == [None, None, original]
    assert await check_ledger(store) == []


async def test_a_units_movements_are_reversed_newest_first(
    client: httpx.AsyncClient, ingestor: Ingestor, probe: Probe, store: Store
) -> None:
    await receive_units(ingestor, 1)
    receipt = (await probe.ledger())[0]["id"]
    moved = await ok(client, "transfers", {"epc": sgtin(1), "to_location": "wh1.a.1"})
    transfer = moved["movements"][0]["id"]

    await refused(
        client,
        "reversals",
        {"movement_id": receipt, "note": "misread"},
        409,
        f"(movement {transfer})",
    )
    await ok(client, "reversals", {"movement_id": transfer, "note": "not moved"})
    unit = (await probe.units())[sgtin(1)]
    assert (unit["status"], unit["location_id"]) == ("in_stock", "wh1.receiving")

    # The receipt a portal recorded by mistake: the unit leaves stock again.
    await ok(client, "reversals", {"movement_id": receipt, "note": "read through the wall"})
    unit = (await probe.units())[sgtin(1)]
    assert (unit["status"], unit["location_id"]) == ("missing", None)
    assert all(on_hand == 0 for on_hand in (await probe.balances()).values())
    assert await check_ledger(store) == []


async def test_a_request_id_makes_a_retry_return_the_first_result(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    body = {
        "reason": "found",
        "sku": "BOLT",
        "location": "wh1.a.1",
        "quantity": 2,
        "request_id": "r-1",
    }
    first = await op(client, "adjustments", body)
    retry = await op(client, "adjustments", body)
    other = await op(
        client,
        "transfers",
        {
            "sku": "BOLT",
            "from_location": "wh1.a.1",
            "to_location": "wh2",
            "quantity": 1,
            "request_id": "r-1",
        },
    )

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["replayed"] is True
    assert retry.json()["movements"] == first.json()["movements"]
    assert first.json()["event_id"] == "api:olga:r-1"
    assert other.status_code == 409
    assert "request_id" in other.json()["detail"]
    assert len(await probe.ledger()) == 1
    # Another key's request ids are its own.
    theirs = await op(client, "adjustments", body, key=ADMIN_KEY)
    assert theirs.status_code == 201
    assert (await probe.balances())[("BOLT", "wh1.a.1")] == 4


async def test_keys_restricted_to_sites_operate_only_there(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    await ok(
        client, "adjustments", {"reason": "found", "sku": "NUT", "location": "wh2.b", "quantity": 2}
    )
    theirs = (await probe.ledger())[0]["id"]
    own = {"reason": "found", "sku": "NUT", "location": "wh1.a.1", "quantity": 2}
    await ok(client, "adjustments", own, key=WH1_OPERATOR_KEY)
    across = await op(
        client,
        "transfers",
        {"sku": "NUT", "from_location": "wh1.a.1", "to_location": "wh2.b", "quantity": 1},
        key=WH1_OPERATOR_KEY,
    )
    hidden = await op(
        client, "reversals", {"movement_id": theirs, "note": "x"}, key=WH1_OPERATOR_KEY
    )
    assert across.status_code == 403
    assert "'wh2.b' is outside" in across.json()["detail"]
    assert hidden.status_code == 404
    assert len(await probe.ledger()) == 2


async def test_concurrent_reversals_of_one_row_apply_once(
    client: httpx.AsyncClient, probe: Probe, store: Store
) -> None:
    found = await ok(
        client,
        "adjustments",
        {"reason": "found", "sku": "NUT", "location": "wh1.a.1", "quantity": 3},
    )
    target = found["movements"][0]["id"]
    responses = await asyncio.gather(
        *(op(client, "reversals", {"movement_id": target, "note": f"try {n}"}) for n in range(4))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert len(await probe.ledger()) == 2
    assert (await probe.balances())[("NUT", "wh1.a.1")] == 0
    assert await check_ledger(store) == []


async def test_stock_as_of_a_past_time_comes_from_the_ledger(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    now = now_utc().replace(microsecond=0)
    t = [now - timedelta(hours=h) for h in (5, 4, 3, 2)]
    await ok(
        client,
        "adjustments",
        {
            "reason": "found",
            "sku": "BOLT",
            "location": "wh1.a.1",
            "quantity": 10,
            "event_time": t[0].isoformat(),
        },
    )
    moved = await ok(
        client,
        "transfers",
        {
            "sku": "BOLT",
            "from_location": "wh1.a.1",
            "to_location": "wh2.b",
            "quantity": 4,
            "event_time": t[1].isoformat(),
        },
    )
    await ok(
        client,
        "reversals",
        {"movement_id": moved["movements"][0]["id"], "note": "no", "event_time": t[3].isoformat()},
    )

    async def stock(key: str = VIEWER_KEY, **params: Any) -> set[tuple[str, str, int]]:
        response = await client.get("/api/v1/stock", headers=bearer(key), params=params)
        assert response.status_code == 200, response.text
        return {(r["sku"], r["location"], r["on_hand"]) for r in response.json()["items"]}

    before = (t[0] - timedelta(seconds=1)).isoformat()
    assert await stock(as_of=before) == set()
    assert await stock(as_of=t[0].isoformat()) == {("BOLT", "wh1.a.1", 10)}  # inclusive
    between = {("BOLT", "wh1.a.1", 6), ("BOLT", "wh2.b", 4)}
    assert await stock(as_of=t[2].isoformat()) == between
    # Naive times are UTC.
    assert await stock(as_of=t[2].replace(tzinfo=None).isoformat()) == between
    assert await stock(as_of=t[2].isoformat(), location="wh2") == {("BOLT", "wh2.b", 4)}
    assert await stock(as_of=t[2].isoformat(), key="wh2-viewer-key-0123456789") == {
        ("BOLT", "wh2.b", 4)
    }
    assert await stock(as_of=t[3].isoformat()) == {("BOLT", "wh1.a.1", 10)}
    assert await stock(as_of=t[3].isoformat(), include_zero="true") == {
        ("BOLT", "wh1.a.1", 10),
        ("BOLT", "wh2.b", 0),
    }
    # As of now it is what the balances say.
    assert await stock(as_of=now_utc().isoformat()) == await stock()
    paged = (
        await client.get(
            "/api/v1/stock",
            headers=VIEWER,
            params={"as_of": t[2].isoformat(), "limit": 1, "offset": 1},
        )
    ).json()
    assert (paged["total"], [r["location"] for r in paged["items"]]) == (2, ["wh2.b"])
    bad = await client.get("/api/v1/stock", headers=VIEWER, params={"as_of": "yesterday"})
    assert bad.status_code == 422
    assert len(await probe.ledger()) == 3
