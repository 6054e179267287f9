"""The edge agent end to end on its side: scripted readers, real outbox, real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from edge.agent import EdgeAgent, run_edge
from edge.buffer.outbox import Outbox
from edge.config import EdgeSettings
from edge.readers.scripted import ScriptedReader, Step
from edge.readers.types import AntennaChanged, ReaderFault, TagRead
from plumbing.mqtt import Message, MqttClient
from plumbing.settings import MqttSettings
from tests.edge.support import ack_of, eventually, running
from wire import topics
from wire.identifiers import sgtin96_hex
from wire.models import EventBatch, Status

SITE = "wh1"
GATEWAY = "gw-agent"
EPC_IN = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.1")
EPC_OUT = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.2")
EPC_STRAY = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.3")
EPC_LATE = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.4")


def scripted(name: str, script: list[Step]) -> ScriptedReader:
    """The reader port's in-repo fake, playing ``script`` and then idling."""
    return ScriptedReader(name, script, reads_per_s=3.0)


def tag(epc: str, antenna: int, reader: str = "dock1") -> TagRead:
    now_us = time.time_ns() // 1000
    return TagRead(
        reader=reader,
        epc_hex=epc,
        antenna=antenna,
        rssi=-50.0,
        first_seen_us=now_us,
        last_seen_us=now_us,
    )


def crossing(epc: str, first: int, second: int, reads: int = 4) -> list[Step]:
    steps: list[Step] = []
    for antenna in (first, second):
        for _ in range(reads):
            steps += [tag(epc, antenna), 0.01]
    return steps


def settings(tmp_path: Path, url: str, **extra: Any) -> EdgeSettings:
    values: dict[str, Any] = {
        "gateway": {"id": GATEWAY, "site": SITE},
        "mqtt": {"url": url},
        "buffer": {"path": tmp_path / "outbox.db", "commit_interval_ms": 20},
        "llrp": [{"name": "dock1", "host": "127.0.0.1"}],
        "portals": [
            {
                "read_point": "wh1.dock.1",
                "reader": "dock1",
                "outside_antennas": [1],
                "inside_antennas": [2],
                "departure_timeout_s": 0.3,
                "min_reads": 2,
                # Passes handed out as they depart (the grouping: test_pass_groups.py).
                "group_hold_s": 0,
            }
        ],
        "status": {"interval_s": 0.5},
    }
    values.update(extra)
    return EdgeSettings(**values)


def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"mqtt://127.0.0.1:{port}"  # nothing listens there


async def stored_events(path: Path) -> list[dict[str, Any]]:
    import json

    async with Outbox.open(path, GATEWAY) as outbox:
        return [json.loads(body) for _, body in await outbox.next_batch(0, 1000)]


async def test_passes_reach_the_outbox_with_the_broker_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(
        tmp_path,
        closed_port_url(),
        scanners=[{"name": "handheld-1", "port": "/dev/null", "read_point": "wh1.aisle.3"}],
    )
    reader = scripted(
        "dock1",
        [
            *crossing(EPC_IN, 1, 2),
            *crossing(EPC_OUT, 2, 1),
            tag(EPC_STRAY, 7),  # an antenna no portal uses
            AntennaChanged("dock1", antenna=2, connected=False),
            ReaderFault("dock1", "reader overheated"),
            0.6,  # both passes depart
            tag(EPC_LATE, 1),  # still in the field when the agent stops
        ],
    )
    agent = EdgeAgent(config, readers={"dock1": reader})
    with caplog.at_level(logging.WARNING):
        async with running(agent):
            await asyncio.wait_for(reader.done.wait(), 10)
            await eventually(lambda: agent.counters.passes == 2)
            status = await agent.status()
    assert reader.entered
    assert reader.closed
    assert agent.counters.ignored_reads == 1
    assert agent.counters.reads == 18
    assert agent.counters.passes == 3  # the open pass was stored at shutdown, not dropped
    assert status.state == "online"
    assert status.buffer_depth == 2
    assert status.readers[0].last_error == "exception: reader overheated"
    # /dev/null is no tty: the scanner is reported in error (and retried), nothing else stops.
    assert ("handheld-1", "serial", "error") in [(r.name, r.kind, r.state) for r in status.readers]
    assert any("scanner handheld-1: error: cannot open" in r.getMessage() for r in caplog.records)
    assert any("antenna 2 disconnected" in r.getMessage() for r in caplog.records)

    events = await stored_events(config.buffer.path)
    by_epc = {e["epc"]: e for e in events}
    inbound = by_epc["urn:epc:id:sgtin:0614141.107346.1"]
    assert (inbound["direction"], inbound["biz_step"]) == ("in", "receiving")
    assert inbound["read_point"] == "wh1.dock.1"
    assert inbound["reads"]["count"] == 8
    outbound = by_epc["urn:epc:id:sgtin:0614141.107346.2"]
    assert (outbound["direction"], outbound["biz_step"]) == ("out", "shipping")
    late = by_epc["urn:epc:id:sgtin:0614141.107346.4"]
    assert late["direction"] is None
    assert "urn:epc:id:sgtin:0614141.107346.3" not in by_epc


async def _collect(client: MqttClient, into: asyncio.Queue[Message]) -> None:
    async for message in client.messages():
        await into.put(message)


@pytest.mark.broker
async def test_agent_publishes_batches_status_and_goes_offline(
    tmp_path: Path, mosquitto: Any, relay: Any
) -> None:
    config = settings(tmp_path, relay.url)
    reader = scripted("dock1", [*crossing(EPC_IN, 1, 2), *crossing(EPC_OUT, 2, 1)])
    events_topic = topics.events(SITE, GATEWAY)
    status_topic = topics.status(SITE, GATEWAY)
    received: asyncio.Queue[Message] = asyncio.Queue()

    async def next_on(topic: str, timeout: float = 10.0) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                message = await received.get()
                if message.topic == topic:
                    return message

    async with MqttClient(MqttSettings(url=mosquitto.url), "server-agent") as server:
        await server.wait_connected(10)
        await server.subscribe(events_topic)
        await server.subscribe(status_topic)
        collector = asyncio.create_task(_collect(server, received))
        try:
            agent = EdgeAgent(config, readers={"dock1": reader})
            async with running(agent):
                online = Status.model_validate_json((await next_on(status_topic)).payload)
                assert online.state == "online"
                assert online.readers[0].name == "dock1"

                directions: dict[str | None, str | None] = {}
                for _ in range(5):  # the two passes may end in one batch or in two
                    payload = (await next_on(events_topic)).payload
                    batch = EventBatch.model_validate_json(payload)
                    await server.publish(topics.ack(SITE, GATEWAY), ack_of(GATEWAY, batch))
                    directions |= {e.epc: e.direction for e in batch.events}
                    if len(directions) == 2:
                        break
                assert directions == {
                    "urn:epc:id:sgtin:0614141.107346.1": "in",
                    "urn:epc:id:sgtin:0614141.107346.2": "out",
                }
                await eventually(lambda: agent.outbox is not None and agent.outbox.depth() == 0)

                # The link dies without a DISCONNECT: the broker publishes the will.
                relay.open = False
                relay.cut()
                for _ in range(20):
                    state = Status.model_validate_json((await next_on(status_topic)).payload)
                    if state.state == "offline":
                        break
                assert state.state == "offline"
                relay.open = True
                for _ in range(20):  # back: online again at once
                    state = Status.model_validate_json((await next_on(status_topic)).payload)
                    if state.state == "online":
                        break
                assert state.state == "online"
            # Clean stop: offline published explicitly.
            for _ in range(20):
                state = Status.model_validate_json((await next_on(status_topic)).payload)
                if state.state == "offline":
                    break
            assert state.state == "offline"
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
    assert await stored_events(config.buffer.path) == []


async def test_run_edge_stops_on_cancel_and_keeps_reads(tmp_path: Path) -> None:
    config = settings(tmp_path, closed_port_url())
    reader = scripted("dock1", crossing(EPC_IN, 1, 2))
    task = asyncio.create_task(run_edge(config, readers={"dock1": reader}))
    await asyncio.wait_for(reader.done.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 15)
    assert reader.closed
    events = await stored_events(config.buffer.path)
    assert [e["epc"] for e in events] == ["urn:epc:id:sgtin:0614141.107346.1"]
