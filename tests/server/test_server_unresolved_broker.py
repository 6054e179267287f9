"""An undirected portal pass through a real Mosquitto: kept, alerted, resolved over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import GTIN_A, OPERATOR_KEY, VIEWER_KEY, Batches, bearer, sgtin
from test_server_broker import MESSAGE_TIMEOUT_S, broker_settings, next_message, running
from test_server_unresolved import undirected

from plumbing.mqtt import Message, MqttClient
from plumbing.settings import MqttSettings
from server.app import Server
from wire.models import Ack

pytestmark = pytest.mark.broker

ALERTS_TOPIC = "stockgate/v1/wh1/alerts"


async def alert_change(edge: MqttClient, change: str, others: list[Message]) -> dict[str, Any]:
    """The next ``unresolved_passes`` notice of ``change`` (bounded); other messages read
    meanwhile (the Ack) go to ``others``."""
    for _ in range(20):
        message = await next_message(edge)
        if message.topic == ALERTS_TOPIC:
            notice: dict[str, Any] = json.loads(message.payload)
            if notice["kind"] == "unresolved_passes" and notice["change"] == change:
                return notice
        others.append(message)
    raise AssertionError(f"no unresolved_passes {change} notice")


async def test_undirected_pass_through_the_broker_is_resolved_over_http(
    mosquitto: Any, tmp_path: Path
) -> None:
    batches = Batches()
    pallet = [undirected(batches, sgtin(n), group="pallet-1") for n in (1, 2)]
    stray = undirected(batches, sgtin(3))
    async with (
        running(Server(broker_settings(tmp_path, mosquitto.url))) as server,
        MqttClient(MqttSettings(url=mosquitto.url), "edge-gw1") as edge,
    ):
        await edge.wait_connected(MESSAGE_TIMEOUT_S)
        await edge.subscribe(batches.ack_topic)
        await edge.subscribe(ALERTS_TOPIC)
        await edge.publish(batches.topic, batches.payload([*pallet, stray]))
        others: list[Message] = []
        opened = await alert_change(edge, "opened", others)
        assert server.api_port is not None
        base = f"http://127.0.0.1:{server.api_port}/api/v1"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            listed = await http.get("/unresolved-passes", headers=bearer(VIEWER_KEY))
            by_epc = {p["epc"]: p for p in listed.json()["items"]}
            group = await http.post(
                "/unresolved-passes/resolve",
                json={"group": "pallet-1", "direction": "in"},
                headers=bearer(OPERATOR_KEY),
            )
            single = await http.post(
                f"/unresolved-passes/{by_epc[sgtin(3)]['id']}/resolve",
                json={"direction": "ignore"},
                headers=bearer(OPERATOR_KEY),
            )
            twice = await http.post(
                f"/unresolved-passes/{by_epc[sgtin(1)]['id']}/resolve",
                json={"direction": "out"},
                headers=bearer(OPERATOR_KEY),
            )
            cleared = await alert_change(edge, "cleared", others)
            first_movement = group.json()["movements"][0]["id"]
            reversal = await http.post(
                "/reversals",
                json={"movement_id": first_movement, "note": "one case stayed on the truck"},
                headers=bearer(OPERATOR_KEY),
            )
            stock = await http.get("/stock", headers=bearer(VIEWER_KEY))
            metrics = (await http.get(f"http://127.0.0.1:{server.api_port}/metrics")).text
        # The batch was acked like any other (the edge may delete it).
        acks = [m for m in others if m.topic == batches.ack_topic]
        if not acks:
            acks.append(await next_message(edge))

    assert Ack.model_validate_json(acks[0].payload).batches[0].batch_id == "gw1-b1"
    assert (opened["subject"], opened["site"]) == ("wh1.dock.1", "wh1")
    assert cleared["subject"] == "wh1.dock.1"
    assert listed.status_code == 200
    assert set(by_epc) == {sgtin(1), sgtin(2), sgtin(3)}
    assert all(p["state"] == "open" for p in by_epc.values())
    assert by_epc[sgtin(1)]["group"] == "pallet-1"
    assert group.status_code == 200, group.text
    assert [m["kind"] for m in group.json()["movements"]] == ["receipt", "receipt"]
    assert single.status_code == 200, single.text
    assert twice.status_code == 409
    assert reversal.status_code == 201, reversal.text
    assert [(r["sku"], r["location"], r["on_hand"]) for r in stock.json()["items"]] == [
        (GTIN_A, "wh1.receiving", 1)
    ]
    assert 'stockgate_unresolved_passes_total{read_point="wh1.dock.1"} 3.0' in metrics
    assert 'stockgate_resolved_passes_total{direction="in",read_point="wh1.dock.1"} 2.0' in metrics
