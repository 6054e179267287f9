"""A pallet through a dock door, end to end, on real parts.

Simulated reader (real LLRP over TCP) -> edge agent -> a real Mosquitto started by the
fixture -> server on SQLite -> HTTP API on a real port. Nothing in between is faked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.agent import EdgeAgent
from firmware_sim.scenario import Scenario, bundled_scenario, load_scenario
from firmware_sim.scenario_run import run_scenario
from firmware_sim.truth import GroundTruth
from plumbing.mqtt import Message, MqttClient
from plumbing.settings import MqttSettings
from stockgate.demo_api import fetch_stock, staged_units_moved
from stockgate.demo_settings import GATEWAY_ID
from tests.e2e.settle import settle
from tests.e2e.stack import running_stack
from wire import topics

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SETTLE_TIMEOUT_S = 60.0


@dataclass
class Stack:
    scenario: Scenario
    truth: GroundTruth
    agent: EdgeAgent
    api: httpx.AsyncClient
    observer: MqttClient
    seen: list[Message]


async def _record(observer: MqttClient, seen: list[Message]) -> None:
    async for message in observer.messages():
        seen.append(message)


@pytest.fixture
async def stack(mosquitto: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    scenario = load_scenario(bundled_scenario("small"))
    observer = MqttClient(MqttSettings(url=mosquitto.url), "e2e-observer")
    seen: list[Message] = []
    async with observer, asyncio.TaskGroup() as tasks:
        # Subscribed before the edge starts: every batch it publishes is recorded.
        await observer.wait_connected(10)
        await observer.subscribe(topics.events(scenario.site, GATEWAY_ID))
        await observer.subscribe(topics.ack(scenario.site, GATEWAY_ID))
        recorder = tasks.create_task(_record(observer, seen))
        async with (
            running_stack(scenario, mosquitto.url, tmp_path, ("admin", "viewer")) as running,
            running.api("admin") as api,
        ):
            await run_scenario(scenario, running.door)
            await settle(running.agent, SETTLE_TIMEOUT_S)
            yield Stack(scenario, scenario.ground_truth(), running.agent, api, observer, seen)
        recorder.cancel()


async def _all_movements(api: httpx.AsyncClient, **params: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    cursor: str | None = None
    for _ in range(1000):
        query = {"limit": "7", **params, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/api/v1/movements", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        rows.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError("movement pages never ended")


async def test_stock_equals_the_scenario_ground_truth(stack: Stack) -> None:
    truth = stack.truth
    assert truth.received, "the scenario must receive"
    assert truth.shipped, "the scenario must ship"
    assert truth.staged, "the scenario must stage a pallet"

    assert await fetch_stock(stack.api) == truth.stock

    movements = await _all_movements(stack.api)
    receipts = {row["epc"] for row in movements if row["kind"] == "receipt"}
    shipments = {row["epc"] for row in movements if row["kind"] == "shipment"}
    assert receipts == truth.received
    assert shipments == truth.shipped
    assert len(movements) == len(truth.received) + len(truth.shipped)

    # The staged pallet was read (one side only) and moved nothing.
    assert await staged_units_moved(stack.api, truth) == []

    shipped = sorted(truth.shipped)[0]
    unit = (await stack.api.get(f"/api/v1/units/{shipped}")).json()
    assert unit["status"] == "shipped"
    kept = sorted(truth.received - truth.shipped)[0]
    unit = (await stack.api.get(f"/api/v1/units/{kept}")).json()
    assert unit["status"] == "in_stock"
    assert unit["location"] == stack.scenario.inbound_location


async def test_a_batch_sent_again_after_its_ack_was_lost_changes_nothing(stack: Stack) -> None:
    """The edge re-sends a committed batch whose Ack it never got: the stock must not move.

    The observer recorded the edge's batches byte for byte as they crossed the broker;
    publishing one again on the edge's topic is exactly the edge's re-send.
    """
    scenario = stack.scenario
    events_topic = topics.events(scenario.site, GATEWAY_ID)
    batches = [m for m in stack.seen if m.topic == events_topic]
    assert batches, "the edge published no batch"
    before_stock = await fetch_stock(stack.api)
    before_moves = await _all_movements(stack.api)

    resent = max(batches, key=lambda m: len(json.loads(m.payload)["events"]))
    batch_id = json.loads(resent.payload)["batch_id"]
    acks_before = sum(
        batch_id in m.payload.decode() for m in stack.seen if m.topic.endswith("/ack")
    )
    await stack.observer.publish(events_topic, resent.payload)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        acks = sum(batch_id in m.payload.decode() for m in stack.seen if m.topic.endswith("/ack"))
        if acks > acks_before:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the server did not acknowledge the re-sent batch")

    assert await fetch_stock(stack.api) == before_stock
    assert await _all_movements(stack.api) == before_moves
