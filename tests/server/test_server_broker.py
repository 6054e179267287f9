"""The whole server against a real Mosquitto: batches in, Acks out, API on a real port."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import BASE_TIME, GTIN_A, VIEWER_KEY, Batches, make_settings, sgtin

from plumbing.broker import free_loopback_port as free_port
from plumbing.mqtt import Message, MqttClient
from plumbing.settings import MqttSettings
from server.app import Server
from server.config.settings import ServerSettings
from wire.models import Ack

pytestmark = pytest.mark.broker

READY_TIMEOUT_S = 60.0
"""A restart onto the broker's persistent session took 30 s once on a busy machine (20 s
was too short); not understood yet, see the closing note of the session that raised it."""
MESSAGE_TIMEOUT_S = 10.0


def broker_settings(tmp_path: Path, url: str) -> ServerSettings:
    return make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
        mqtt={"url": url, "client_id": "stockgate-server-test"},
    )


@contextlib.asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    ready = asyncio.Event()
    task = asyncio.create_task(server.run(ready), name="test-server")
    try:
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait(
            {waiter, task}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            if task.done():
                task.result()  # raises what stopped the server
            raise AssertionError(f"server not ready within {READY_TIMEOUT_S}s")
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_message(client: MqttClient) -> Message:
    async def first() -> Message:
        async for message in client.messages():
            return message
        raise AssertionError("message stream ended")

    return await asyncio.wait_for(first(), MESSAGE_TIMEOUT_S)


async def get_json(port: int, path: str, **params: Any) -> tuple[int, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        response = await http.get(
            path, params=params, headers={"Authorization": f"Bearer {VIEWER_KEY}"}
        )
    return response.status_code, response.json()


async def test_batch_through_the_broker_is_applied_acked_and_served(
    mosquitto: Any, tmp_path: Path
) -> None:
    batches = Batches()
    payload = batches.payload([batches.event(epc=sgtin(n)) for n in range(1, 4)])
    status = {"gateway": "gw1", "site": "wh1", "state": "online", "at": BASE_TIME.isoformat()}
    async with (
        running(Server(broker_settings(tmp_path, mosquitto.url))) as server,
        MqttClient(MqttSettings(url=mosquitto.url), "edge-gw1") as edge,
    ):
        await edge.wait_connected(MESSAGE_TIMEOUT_S)
        await edge.subscribe(batches.ack_topic)
        await edge.publish(batches.topic, payload)
        ack = Ack.model_validate_json((await next_message(edge)).payload)
        await edge.publish("stockgate/v1/wh1/gw1/status", json.dumps(status).encode(), retain=True)
        await edge.publish(batches.topic, payload)  # a resend: acked again, applied once
        again = Ack.model_validate_json((await next_message(edge)).payload)

        assert server.api_port is not None
        code, stock = await get_json(server.api_port, "/api/v1/stock")
        health_code, health = await get_json(server.api_port, "/healthz")
        gateways: list[Any] = []
        for _ in range(50):  # the status travels on its own; bounded wait for it
            gateways = (await get_json(server.api_port, "/api/v1/gateways"))[1]["items"]
            if gateways:
                break
            await asyncio.sleep(0.1)

    assert (ack.gateway, ack.batches[0].batch_id) == ("gw1", "gw1-b1")
    assert again.batches[0].batch_id == "gw1-b1"
    assert code == 200
    assert [(r["sku"], r["location"], r["on_hand"]) for r in stock["items"]] == [
        (GTIN_A, "wh1.receiving", 3)
    ]
    assert health_code == 200
    assert health == {
        "status": "ok",
        "database": True,
        "mqtt": True,
        "database_full_since": None,
        "database_error": None,
    }
    assert [(g["id"], g["state"]) for g in gateways] == [("gw1", "online")]


async def test_batches_sent_while_the_server_is_down_arrive_after_restart(
    mosquitto: Any, tmp_path: Path
) -> None:
    settings = broker_settings(tmp_path, mosquitto.url)
    batches = Batches()
    async with MqttClient(MqttSettings(url=mosquitto.url), "edge-gw1") as edge:
        await edge.wait_connected(MESSAGE_TIMEOUT_S)
        await edge.subscribe(batches.ack_topic)
        async with running(Server(settings)):
            pass  # first start: the broker now holds the server's persistent session
        await edge.publish(batches.topic, batches.payload([batches.event(epc=sgtin(1))]))
        async with running(Server(settings)) as server:
            ack = Ack.model_validate_json((await next_message(edge)).payload)
            assert server.api_port is not None
            _, stock = await get_json(server.api_port, "/api/v1/stock")

    assert ack.batches[0].batch_id == "gw1-b1"
    assert stock["total"] == 1


async def test_embedded_broker_setting_starts_one_in_process(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
        mqtt={"url": "embedded"},
        embedded_broker={"port": port},
    )
    async with running(Server(settings)) as server:
        assert server.mqtt_url == f"mqtt://127.0.0.1:{port}"
        assert server.api_port is not None
        code, health = await get_json(server.api_port, "/healthz")
    assert (code, health["mqtt"]) == (200, True)
