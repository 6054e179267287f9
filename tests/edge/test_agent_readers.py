"""Several LLRP readers in one agent, on real TCP with two simulated readers.

Each simulator plays its own dock door. The agent must keep them apart (read points,
directions), report each reader's antennas and state in its health, keep one reader
reading while the other goes away and comes back, and serve all of it as Prometheus
metrics on a local port.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from edge.agent import EdgeAgent
from edge.buffer.outbox import Outbox
from edge.config import EdgeSettings
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scenario import Scenario, parse_scenario
from firmware_sim.scenario_run import run_scenario
from tests.edge.support import eventually, running

GATEWAY = "gw-two"


def door(name: str, read_point: str, item_reference: str, direction: str) -> Scenario:
    return parse_scenario(
        f"""
        name = "{name}"
        site = "wh1"
        read_point = "{read_point}"
        inbound_location = "wh1.receiving"
        seed = 5
        [reader]
        name = "{name}"
        antennas = 2
        outside_antennas = [1]
        inside_antennas = [2]
        [[items]]
        id = "item"
        name = "Item {item_reference}"
        company_prefix = "0614141"
        item_reference = "{item_reference}"
        [[pallets]]
        id = "P"
        cases = [{{ item = "item", count = 3 }}]
        [[passes]]
        at_s = 0.0
        pallet = "P"
        direction = "in"
        """
        + (
            """
        [[passes]]
        at_s = 3.65
        pallet = "P"
        direction = "out"
        """
            if direction == "out"
            else ""
        )
    )


def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"mqtt://127.0.0.1:{port}"


def settings(tmp_path: Path, ports: dict[str, int]) -> EdgeSettings:
    return EdgeSettings(
        gateway={"id": GATEWAY, "site": "wh1"},
        mqtt={"url": closed_port_url()},
        buffer={"path": tmp_path / "outbox.db", "commit_interval_ms": 20},
        llrp=[
            {
                "name": name,
                "host": "127.0.0.1",
                "port": port,
                "keepalive_s": 0.5,
                "backoff_initial_s": 0.05,
                "backoff_max_s": 0.2,
            }
            for name, port in ports.items()
        ],
        portals=[
            {
                "read_point": f"wh1.{name}",
                "reader": name,
                "outside_antennas": [1],
                "inside_antennas": [2],
                "departure_timeout_s": 0.5,
            }
            for name in ports
        ],
        status={"interval_s": 0.5},
        metrics={"port": 0},
    )


async def metrics(agent: EdgeAgent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert agent.metrics_server is not None
    url = f"http://127.0.0.1:{agent.metrics_server.port}/metrics"
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        assert response.status_code == 200
        assert (await client.get(url.replace("/metrics", "/other"))).status_code == 404
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_two_readers_two_doors_health_and_metrics(tmp_path: Path) -> None:
    door1 = door("dock1", "wh1.dock1", "300001", "in")
    door2 = door("dock2", "wh1.dock2", "300002", "out")
    sim1 = ReaderSimulator(antennas=2, name="dock1", seed=1)
    sim2 = ReaderSimulator(antennas=4, name="dock2", seed=2)
    async with sim1, sim2:
        config = settings(tmp_path, {"dock1": sim1.port, "dock2": sim2.port})
        agent = EdgeAgent(config)
        async with running(agent):
            await sim1.wait_inventory(10)
            await sim2.wait_inventory(10)

            # An antenna in use is unplugged at one door: that reader says so, the
            # other does not, and the health lists it until it is back.
            sim2.set_antenna_connected(2, False)
            await eventually(lambda: agent.readers["dock2"].status().antennas_disconnected == [2])
            status = await agent.status()
            assert [(i.kind, i.subject) for i in status.issues] == [
                ("antenna_disconnected", "dock2/antenna 2")
            ]
            assert {r.name: r.antennas_disconnected for r in status.readers} == {
                "dock1": [],
                "dock2": [2],
            }
            sim2.set_antenna_connected(2, True)
            await eventually(lambda: agent.readers["dock2"].status().antennas_disconnected == [])
            assert (await agent.status()).issues == []

            # Both doors at once.
            await asyncio.gather(run_scenario(door1, sim1), run_scenario(door2, sim2))
            await eventually(lambda: not any(map(len, agent.trackers)))

            samples = await metrics(agent)
            for reader in ("dock1", "dock2"):
                assert samples[("stockgate_edge_reads_total", (("reader", reader),))] > 0
                state = (("reader", reader), ("state", "connected"))
                assert samples[("stockgate_edge_reader_state", state)] == 1.0
            finished = "stockgate_edge_events_finished_total"
            assert samples[(finished, (("kind", "in"), ("read_point", "wh1.dock1")))] == 3
            assert samples[(finished, (("kind", "in"), ("read_point", "wh1.dock2")))] == 3
            assert samples[(finished, (("kind", "out"), ("read_point", "wh1.dock2")))] == 3
            assert samples[("stockgate_edge_outbox_depth", ())] == 9
            assert samples[("stockgate_edge_mqtt_connected", ())] == 0.0
            assert samples[("process_resident_memory_bytes", ())] > 0

            # One reader goes away and comes back on its port; the other reads on.
            port1 = sim1.port
            await sim1.close()
            await eventually(lambda: agent.readers["dock1"].status().state != "connected")
            assert agent.readers["dock2"].status().state == "connected"
            async with ReaderSimulator(antennas=2, name="dock1", port=port1) as again:
                await again.wait_inventory(10)
                await eventually(lambda: agent.readers["dock1"].status().state == "connected")

    events = await stored(config.buffer.path)
    seen = {(e["read_point"], e["epc"], e["direction"]) for e in events}
    expected = {("wh1.dock1", unit.urn, "in") for unit in door1.units} | {
        ("wh1.dock2", unit.urn, d) for unit in door2.units for d in ("in", "out")
    }
    assert seen == expected
    assert len(events) == len(expected)


async def stored(path: Path) -> list[dict[str, Any]]:
    async with Outbox.open(path, GATEWAY) as outbox:
        return [json.loads(body) for _, body in await outbox.next_batch(0, 1000)]
