"""Read points as data: seeded from the config (which wins), managed through the API, and
used by ingest at once (this instance) or within the refresh time (other instances)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from server_helpers import (
    ADMIN_KEY,
    VIEWER_KEY,
    WH1_ADMIN_KEY,
    Batches,
    Probe,
    RecordingPublisher,
    bearer,
    make_scoped_settings,
    sgtin,
)

from server.api.factory import create_app
from server.commands.read_points import ReadPointCatalog
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store

ADMIN = bearer(ADMIN_KEY)
VIEWER = bearer(VIEWER_KEY)
SHELF = {"id": "wh1.shelf.9", "inbound_location": "wh1.receiving", "outbound": "ship"}


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_scoped_settings(database_url)


@pytest.fixture
async def catalog(store: Store, settings: ServerSettings) -> ReadPointCatalog:
    seeded = ReadPointCatalog(store, settings.read_points)
    await seeded.seed()
    return seeded


@pytest.fixture
def ingest(
    store: Store, settings: ServerSettings, catalog: ReadPointCatalog, publisher: RecordingPublisher
) -> Ingestor:
    return Ingestor(store, settings, publisher, Metrics(), read_points=catalog)


@pytest.fixture
async def client(
    store: Store, settings: ServerSettings, catalog: ReadPointCatalog
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store, settings, read_points=catalog))
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        yield http


async def pass_at(ingest: Ingestor, read_point: str, serial: int, direction: str = "in") -> None:
    batches = Batches(epoch=f"{serial:08x}{direction == 'in':08x}")
    event = batches.event(epc=sgtin(serial), read_point=read_point, direction=direction)
    result = await ingest.handle(batches.topic, batches.payload([event]))
    assert result.outcome == "applied", result


async def test_config_read_points_are_seeded_and_cannot_be_changed_through_the_api(
    client: httpx.AsyncClient, settings: ServerSettings
) -> None:
    listing = (await client.get("/api/v1/read-points", headers=VIEWER)).json()
    assert [p["id"] for p in listing["items"]] == sorted(p.id for p in settings.read_points)
    dock = next(p for p in listing["items"] if p["id"] == "wh1.dock.1")
    assert dock["source"] == "config"
    assert dock["site"] == "wh1"
    assert dock["definition"] == {
        "id": "wh1.dock.1",
        "inbound_location": "wh1.receiving",
        "outbound": "ship",
        "site": None,
        "missing_after_s": None,
    }
    # Their inbound locations exist from the start (with their ancestors).
    assert (await client.get("/api/v1/locations/wh2.receiving", headers=VIEWER)).status_code == 200

    changed = await client.put(
        "/api/v1/read-points/wh1.dock.1",
        headers=ADMIN,
        json={"id": "wh1.dock.1", "inbound_location": "wh1.receiving", "outbound": "ignore"},
    )
    deleted = await client.delete("/api/v1/read-points/wh1.dock.1", headers=ADMIN)
    for response in (changed, deleted):
        assert response.status_code == 409
        assert "[[read_points]]" in response.json()["detail"]


async def test_api_read_points_take_effect_in_ingest_at_once(
    client: httpx.AsyncClient, ingest: Ingestor, probe: Probe
) -> None:
    await pass_at(ingest, SHELF["id"], 1)
    assert (await probe.dead_letters())[0]["reason"] == "unknown read point 'wh1.shelf.9'"

    created = await client.post("/api/v1/read-points", headers=ADMIN, json=SHELF)
    assert created.status_code == 201, created.text
    assert created.json()["source"] == "api"
    await pass_at(ingest, SHELF["id"], 2)
    assert (await probe.units())[sgtin(2)]["location_id"] == "wh1.receiving"

    ignore = SHELF | {"outbound": "ignore"}
    replaced = await client.put(f"/api/v1/read-points/{SHELF['id']}", headers=ADMIN, json=ignore)
    assert replaced.json()["definition"]["outbound"] == "ignore"
    await pass_at(ingest, SHELF["id"], 2, direction="out")
    assert (await probe.units())[sgtin(2)]["status"] == "in_stock"

    assert (
        await client.delete(f"/api/v1/read-points/{SHELF['id']}", headers=ADMIN)
    ).status_code == 204
    await pass_at(ingest, SHELF["id"], 3)
    assert [letter["reason"] for letter in await probe.dead_letters()] == [
        "unknown read point 'wh1.shelf.9'"
    ] * 2


BAD_READ_POINTS: list[tuple[str, dict[str, Any], int, str]] = [
    (ADMIN_KEY, SHELF | {"inbound_location": "wh1.nowhere"}, 422, "no location"),
    (ADMIN_KEY, SHELF | {"outbound": "teleport"}, 422, "outbound"),
    (ADMIN_KEY, {"id": "wh1.dock.1", "inbound_location": "wh1.receiving"}, 409, "exists"),
    (WH1_ADMIN_KEY, SHELF | {"inbound_location": "wh2.receiving"}, 403, "wh2"),
    (WH1_ADMIN_KEY, SHELF | {"site": "wh2"}, 403, "wh2"),
    (VIEWER_KEY, SHELF, 403, "viewer"),
    # The config's pattern lets control characters through; PostgreSQL cannot store NUL.
    (ADMIN_KEY, SHELF | {"id": "wh1.dock\x00"}, 422, "control characters"),
]


async def test_bad_read_points_are_refused(client: httpx.AsyncClient) -> None:
    for key, body, status, reason in BAD_READ_POINTS:
        response = await client.post("/api/v1/read-points", headers=bearer(key), json=body)
        assert response.status_code == status, response.text
        assert reason in str(response.json()["detail"]), response.text
    listing = (await client.get("/api/v1/read-points", headers=VIEWER)).json()
    assert SHELF["id"] not in {p["id"] for p in listing["items"]}


async def test_the_config_wins_at_the_next_start(
    store: Store, settings: ServerSettings, client: httpx.AsyncClient
) -> None:
    assert (await client.post("/api/v1/read-points", headers=ADMIN, json=SHELF)).is_success
    # The next start: wh1.gate gone from the file, wh1.shelf.9 now defined there.
    kept = [p for p in settings.read_points if p.id != "wh1.gate"]
    configured = [
        *kept,
        kept[0].model_copy(update={"id": SHELF["id"], "inbound_location": "wh1.yard"}),
    ]
    restarted = ReadPointCatalog(store, configured)
    await restarted.seed()

    table = await restarted.table()
    assert sorted(table) == sorted(p.id for p in configured)
    assert table[SHELF["id"]].inbound_location == "wh1.yard"
    shelf = (await client.get(f"/api/v1/read-points/{SHELF['id']}", headers=VIEWER)).json()
    assert (shelf["source"], shelf["definition"]["inbound_location"]) == ("config", "wh1.yard")
    gone = await client.get("/api/v1/read-points/wh1.gate", headers=VIEWER)
    assert gone.status_code == 404


async def test_other_instances_see_changes_within_the_refresh_time(
    store: Store, settings: ServerSettings, client: httpx.AsyncClient
) -> None:
    now = [0.0]
    other = ReadPointCatalog(store, settings.read_points, refresh_s=5.0, clock=lambda: now[0])
    assert SHELF["id"] not in await other.table()

    assert (await client.post("/api/v1/read-points", headers=ADMIN, json=SHELF)).is_success
    now[0] = 4.9
    assert SHELF["id"] not in await other.table()  # checked less than refresh_s ago
    now[0] = 5.0
    assert SHELF["id"] in await other.table()
