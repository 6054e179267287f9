"""Continuous counting: a unit that leaves a watched shelf and is read nowhere goes missing.

Through ``Ingestor`` (departures and sightings keep the watches) and the alert sweep's
``missing_units`` into a real SQLite file and PostgreSQL; the shrinkage report through the
API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from server_helpers import (
    BASE_TIME,
    VIEWER_KEY,
    Batches,
    Probe,
    bearer,
    make_settings,
    sgtin,
)

from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.shelves import missing_units
from server.store.check import check_ledger
from server.store.database import Store
from wire.identifiers import gtin_of

SHELF = "wh1.a02.b01"
MISSING_AFTER_S = 600
READ_POINTS: list[dict[str, Any]] = [
    {"id": "wh1.dock.1", "inbound_location": "wh1.receiving", "outbound": "ship"},
    {"id": "wh1.gate", "inbound_location": "wh1.yard", "outbound": "ignore"},
    {
        "id": "wh1.shelf.1",
        "inbound_location": SHELF,
        "outbound": "ignore",
        "missing_after_s": MISSING_AFTER_S,
    },
]


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_settings(database_url, read_points=READ_POINTS)


@pytest.fixture
async def client(store: Store, settings: ServerSettings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        yield http


def at(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


def shelf(batches: Batches, biz_step: str, serial: int, minutes: float) -> dict[str, Any]:
    event = batches.event(
        epc=sgtin(serial), direction=None, read_point="wh1.shelf.1", at=at(minutes)
    )
    return event | {"biz_step": biz_step}


async def send(ingestor: Ingestor, batches: Batches, *events: dict[str, Any]) -> None:
    result = await ingestor.handle(batches.topic, batches.payload(list(events)))
    assert result.outcome == "applied", result.reason


async def sweep(store: Store, now: datetime, settings: ServerSettings) -> int:
    async with store.begin("sweeping shelves") as conn:
        return len(await missing_units(conn, now, settings.read_point_table()))


async def report(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/reports/shrinkage", headers=bearer(VIEWER_KEY))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["total_missing"] == sum(row["missing"] for row in body["items"])
    return list(body["items"])


async def test_a_unit_off_its_shelf_and_read_nowhere_goes_missing_and_comes_back(
    ingestor: Ingestor,
    batches: Batches,
    probe: Probe,
    store: Store,
    settings: ServerSettings,
    client: httpx.AsyncClient,
) -> None:
    gtin = gtin_of(sgtin(1))
    await send(ingestor, batches, *(batches.event(epc=sgtin(n), at=at(0)) for n in (1, 2, 3, 4)))
    await send(ingestor, batches, *(shelf(batches, "arriving", n, 1) for n in (1, 2, 3, 4)))
    # All four leave the shelf. Unit 2 is then read at the gate (no direction: a sighting
    # only), unit 3 ships, unit 4 is read back on the shelf in the same batch.
    await send(
        ingestor,
        batches,
        *(shelf(batches, "departing", n, 2) for n in (1, 2, 3, 4)),
        shelf(batches, "arriving", 4, 3),
    )
    gate = batches.event(epc=sgtin(2), direction=None, read_point="wh1.gate", at=at(4))
    await send(ingestor, batches, gate)
    await send(ingestor, batches, batches.event(epc=sgtin(3), direction="out", at=at(5)))

    # Not yet due: nothing happens.
    assert await sweep(store, at(2) + timedelta(seconds=MISSING_AFTER_S - 1), settings) == 0
    assert await sweep(store, at(2) + timedelta(seconds=MISSING_AFTER_S), settings) == 1
    # Twice at once (two instances): the adjustment is recorded once.
    later = at(30)
    assert sum(await asyncio.gather(*(sweep(store, later, settings) for _ in range(2)))) == 0

    units = await probe.units()
    statuses = {n: units[sgtin(n)]["status"] for n in (1, 2, 3, 4)}
    assert statuses == {1: "missing", 2: "in_stock", 3: "shipped", 4: "in_stock"}
    [row] = [r for r in await probe.ledger() if r["reason"] == "shrinkage"]
    assert (row["kind"], row["epc"], row["from_location"], row["to_location"]) == (
        "count_adjustment",
        sgtin(1),
        SHELF,
        None,
    )
    assert (row["read_point"], row["quantity"]) == ("wh1.shelf.1", 1)
    assert (await probe.balances())[(gtin, SHELF)] == 2  # units 2 and 4
    [alert] = [a for a in await probe.alerts() if a["kind"] == "unit_missing"]
    assert (alert["subject"], alert["closed_at"]) == (sgtin(1), None)
    assert "wh1.shelf.1" in alert["message"]
    assert SHELF in alert["message"]
    assert [
        (r["read_point"], r["location"], r["gtin"], r["missing"], r["still_missing"])
        for r in await report(client)
    ] == [("wh1.shelf.1", SHELF, gtin, 1, 1)]
    # The same report as CSV, by its own route and by Accept, with the same filters.
    viewer = bearer(VIEWER_KEY)
    by_route = await client.get(
        "/api/v1/reports/shrinkage.csv", params={"location": "wh1"}, headers=viewer
    )
    by_accept = await client.get(
        "/api/v1/reports/shrinkage",
        params={"location": "wh1"},
        headers=viewer | {"Accept": "text/csv"},
    )
    elsewhere = await client.get(
        "/api/v1/reports/shrinkage.csv", params={"location": "wh1.a01"}, headers=viewer
    )
    assert by_route.status_code == by_accept.status_code == elsewhere.status_code == 200
    assert by_route.headers["content-type"].startswith("text/csv")
    assert by_route.text == by_accept.text
    header, line = by_route.text.splitlines()
    assert header == "read_point,location,sku,gtin,name,missing,still_missing,last_at"
    assert line.split(",")[:7] == [
        "wh1.shelf.1",
        SHELF,
        gtin,
        gtin,
        f"Unreviewed item {gtin}",
        "1",
        "1",
    ]
    assert elsewhere.text.splitlines() == [header]

    # Read again on the shelf: back in stock there, the alert clears. A shipped unit read on
    # the shelf still raises unit_seen_after_shipped.
    await send(
        ingestor, batches, shelf(batches, "arriving", 1, 40), shelf(batches, "arriving", 3, 41)
    )
    units = await probe.units()
    assert (units[sgtin(1)]["status"], units[sgtin(1)]["location_id"]) == ("in_stock", SHELF)
    kinds = {(a["kind"], a["subject"]): a["closed_at"] for a in await probe.alerts()}
    assert kinds[("unit_missing", sgtin(1))] is not None
    assert kinds[("unit_seen_after_shipped", sgtin(3))] is None
    assert [(r["missing"], r["still_missing"]) for r in await report(client)] == [(1, 0)]
    assert await check_ledger(store) == []


async def test_a_departure_from_a_shelf_without_missing_after_s_is_only_a_sighting(
    ingestor: Ingestor, batches: Batches, probe: Probe, store: Store, settings: ServerSettings
) -> None:
    await send(ingestor, batches, batches.event(epc=sgtin(1), at=at(0)))
    gate_departure = batches.event(
        epc=sgtin(1), direction=None, read_point="wh1.gate", at=at(1)
    ) | {"biz_step": "departing"}
    await send(ingestor, batches, gate_departure)
    assert await sweep(store, at(60 * 24), settings) == 0
    assert (await probe.units())[sgtin(1)]["status"] == "in_stock"
