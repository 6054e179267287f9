"""The fleet view and the gateway configuration API over a real store (SQLite and
PostgreSQL), with a recording publisher in place of the broker (the I/O port)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from server_helpers import ADMIN_KEY, BASE_TIME, VIEWER_KEY

from server.api.factory import create_app
from server.commands.gateway_config import ConfigRelay
from server.config.settings import ServerSettings
from server.errors import PublishFailed
from server.ingest.gateway_status import StatusRecorder
from server.metrics import Metrics
from server.store.database import Store
from wire.models import GatewayConfig

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_KEY}"}
PATH = "/api/v1/gateways/gw1/config"


class Retained:
    """Records what would be published retained; ``down`` makes it refuse like a lost link."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.down = False

    async def __call__(self, topic: str, payload: bytes) -> None:
        if self.down:
            raise PublishFailed("broker away")
        self.sent.append((topic, payload))


@pytest.fixture
def retained() -> Retained:
    return Retained()


@pytest.fixture
async def client(
    store: Store, settings: ServerSettings, metrics: Metrics, retained: Retained
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, settings, metrics, config_relay=ConfigRelay(store, retained))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        yield http


def online(**fields: Any) -> bytes:
    status: dict[str, Any] = {
        "gateway": "gw1",
        "site": "wh1",
        "state": "online",
        "at": BASE_TIME.isoformat(),
        "buffer_depth": 40,
        "oldest_unacked_age_s": 12.5,
        "uptime_s": 3600.0,
        "software_version": "1.2.3",
        "disk_free_bytes": 5_000_000_000,
        "cpu_temp_c": 61.9,
        "throttled": [],
        "throttled_since_boot": ["under_voltage"],
        "readers": [
            {
                "name": "dock1",
                "kind": "llrp",
                "state": "connected",
                "antennas": [1, 2],
                "antennas_disconnected": [2],
                "reads_per_s": 30.5,
                "antenna_reads_per_s": {"1": 30.5},
            }
        ],
    }
    status.update(fields)
    return json.dumps(status).encode()


async def test_the_fleet_view_shows_health_and_keeps_it_through_a_last_will(
    client: httpx.AsyncClient, store: Store, settings: ServerSettings, metrics: Metrics
) -> None:
    recorder = StatusRecorder(store, settings.ingest, metrics)
    topic = "stockgate/v1/wh1/gw1/status"
    await recorder.handle(topic, online(config_version=3))
    (gateway,) = (await client.get("/api/v1/gateways", headers=VIEWER)).json()["items"]
    assert gateway["software_version"] == "1.2.3"
    assert gateway["config_version"] == 3
    assert gateway["config_latest"] is None
    assert (gateway["uptime_s"], gateway["outbox_depth"]) == (3600.0, 40)
    assert gateway["oldest_event_age_s"] == 12.5
    assert gateway["disk_free_bytes"] == 5_000_000_000
    assert gateway["cpu_temp_c"] == 61.9
    assert gateway["throttled_since_boot"] == ["under_voltage"]
    assert gateway["readers"] == [
        {
            "name": "dock1",
            "kind": "llrp",
            "state": "connected",
            "antennas": [1, 2],
            "antennas_disconnected": [2],
            "reads_per_s": 30.5,
            "antenna_reads_per_s": {"1": 30.5},
        }
    ]

    will = {"gateway": "gw1", "site": "wh1", "state": "offline", "at": BASE_TIME.isoformat()}
    # The will was built at connect time, before version 3 applied: it says 2.
    stale = {**will, "software_version": "1.2.3", "config_version": 2}
    await recorder.handle(topic, json.dumps(stale).encode())
    (gateway,) = (await client.get("/api/v1/gateways", headers=VIEWER)).json()["items"]
    assert gateway["state"] == "offline"
    assert gateway["status"]["state"] == "offline"
    # As it was when last seen online.
    assert (gateway["outbox_depth"], gateway["config_version"]) == (40, 3)
    assert gateway["readers"][0]["name"] == "dock1"


async def test_a_config_is_validated_versioned_and_published_retained(
    client: httpx.AsyncClient,
    store: Store,
    settings: ServerSettings,
    metrics: Metrics,
    retained: Retained,
) -> None:
    # Never heard of: the site must be named.
    tuning = {"portals": [{"read_point": "wh1.dock.1", "min_reads": 3}]}
    unnamed = await client.put(PATH, json={"settings": tuning}, headers=ADMIN)
    assert unnamed.status_code == 422
    assert "name its site" in unnamed.json()["detail"]
    assert (await client.get(PATH, headers=VIEWER)).status_code == 404

    first = await client.put(PATH, json={"settings": tuning, "site": "wh1"}, headers=ADMIN)
    assert first.status_code == 200, first.text
    assert first.json()["latest"]["version"] == 1
    assert first.json()["published"] is True
    ((topic, payload),) = retained.sent
    assert topic == "stockgate/v1/wh1/gw1/config"
    sent = GatewayConfig.model_validate_json(payload)
    assert (sent.gateway, sent.site, sent.config_version) == ("gw1", "wh1", 1)
    assert sent.settings == tuning

    recorder = StatusRecorder(store, settings.ingest, metrics)
    await recorder.handle("stockgate/v1/wh1/gw1/status", online(config_version=1))
    moved = await client.put(PATH, json={"settings": tuning, "site": "wh2"}, headers=ADMIN)
    assert moved.status_code == 422
    assert "belongs to site 'wh1'" in moved.json()["detail"]

    retained.down = True
    second = await client.put(
        PATH,
        json={"settings": {"dedupe": [{"read_point": "wh1.gate", "reader": "dock1"}]}},
        headers=ADMIN,
    )
    assert second.status_code == 200
    assert (second.json()["latest"]["version"], second.json()["published"]) == (2, False)
    state = (await client.get(PATH, headers=VIEWER)).json()
    assert (state["latest"]["version"], state["running"]) == (2, 1)
    (gateway,) = (await client.get("/api/v1/gateways", headers=VIEWER)).json()["items"]
    assert (gateway["config_version"], gateway["config_latest"]) == (1, 2)

    # After a reconnect the relay publishes each gateway's newest version again.
    retained.down = False
    relay = ConfigRelay(store, retained)
    relay.poke()
    await _run_once(relay)
    assert [GatewayConfig.model_validate_json(p).config_version for _, p in retained.sent] == [
        1,
        2,
    ]


async def _run_once(relay: ConfigRelay) -> None:
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(200):
            if relay.published:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the relay published nothing")
    finally:
        task.cancel()


@pytest.mark.parametrize(
    ("tuning", "says"),
    [
        ({"mqtt": [{"url": "mqtt://x:1"}]}, "not a table the server may tune"),
        ({"llrp": [{"name": "dock1", "port": 1}]}, "port only set in"),
        ({"portals": [{"read_point": "wh1.dock.1", "min_reads": 0}]}, "min_reads"),
        ({"zones": [{"read_point": "x", "antennas": [0]}]}, "zones.0.antennas.0"),
    ],
)
async def test_a_config_the_edge_would_refuse_gets_a_422_with_the_reason(
    client: httpx.AsyncClient, retained: Retained, tuning: dict[str, Any], says: str
) -> None:
    response = await client.put(PATH, json={"settings": tuning, "site": "wh1"}, headers=ADMIN)
    assert response.status_code == 422
    assert says in response.json()["detail"]
    assert retained.sent == []


async def test_only_admins_change_a_config(client: httpx.AsyncClient) -> None:
    body = {"settings": {}, "site": "wh1"}
    assert (await client.put(PATH, json=body, headers=VIEWER)).status_code == 403
    assert (await client.put(PATH, json=body)).status_code == 401


async def test_a_new_version_is_above_what_the_gateway_runs_after_a_restore(
    client: httpx.AsyncClient, store: Store, settings: ServerSettings, metrics: Metrics
) -> None:
    """A database restored from a backup knows fewer versions than the gateway ran; the
    next one must still be above the gateway's, or the gateway would refuse it."""
    recorder = StatusRecorder(store, settings.ingest, metrics)
    await recorder.handle("stockgate/v1/wh1/gw1/status", online(config_version=7))
    tuning = {"zones": [{"read_point": "wh1.shelf.1", "min_reads": 2}]}
    response = await client.put(PATH, json={"settings": tuning}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["latest"]["version"] == 8
