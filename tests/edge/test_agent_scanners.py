"""The edge agent with a serial scanner on a real tty, its outbox and a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest

from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from tests.edge.scanner_pty import pty_scanner
from tests.edge.support import ack_of, eventually
from wire import topics
from wire.barcodes import command_barcode, location_label, scan_line
from wire.gs1 import gs1_item
from wire.models import Event, EventBatch, RefusedEvent, Status
from wire.scans import Command

SITE = "wh1"
GATEWAY = "gw-aisle-3"
GTIN_A = "09506000016924"
EAN13 = "5901234123457"


def line(content: str, symbology: str | None = None) -> bytes:
    return scan_line(content, symbology=symbology, prefix="\x02", suffix="\x03", terminator="\r\n")


def settings(tmp_path: Path, url: str, port: Path) -> EdgeSettings:
    return EdgeSettings(
        gateway={"id": GATEWAY, "site": SITE},
        mqtt={"url": url},
        buffer={"path": tmp_path / "outbox.db", "commit_interval_ms": 20},
        scanners=[
            {
                "name": "handheld-1",
                "port": str(port),
                "read_point": "wh1.aisle.3",
                "prefix": "\x02",
                "suffix": "\x03",
                "backoff_initial_s": 0.05,
                "backoff_max_s": 0.2,
            }
        ],
        status={"interval_s": 0.5},
    )


REFUSAL = "negative stock refused: wh1.aisle.3.bin.1 holds 0 of 05901234123457"


@pytest.mark.broker
async def test_scans_become_published_events(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    port = tmp_path / "ttyScanner"
    events_topic = topics.events(SITE, GATEWAY)
    status_topic = topics.status(SITE, GATEWAY)
    events: list[Event] = []
    statuses: list[Status] = []

    async def serve(server: MqttClient) -> None:
        # The server's part: take each batch, keep its events, acknowledge it.
        async for message in server.messages():
            if message.topic == status_topic:
                statuses.append(Status.model_validate_json(message.payload))
                continue
            batch = EventBatch.model_validate_json(message.payload)
            events.extend(batch.events)
            # The pick finds nothing on the books at a site that refuses negative stock.
            refusals = [
                RefusedEvent(event_id=e.event_id, read_point=e.read_point, reason=REFUSAL)
                for e in batch.events
                if e.biz_step == "picking"
            ]
            await server.publish(
                topics.ack(SITE, GATEWAY), ack_of(GATEWAY, batch, refused=refusals)
            )

    config = settings(tmp_path, mosquitto.url, port)
    agent = EdgeAgent(config)

    def scanner_online() -> bool:
        # As the last status published says.
        return any(
            r.name == "handheld-1" and r.state == "connected"
            for s in statuses[-1:]
            for r in s.readers
        )

    with pty_scanner(port) as device, caplog.at_level(logging.WARNING):
        async with MqttClient(MqttSettings(url=mosquitto.url), "server-scan") as server:
            await server.wait_connected(10)
            await server.subscribe(events_topic)
            await server.subscribe(status_topic)
            serving = asyncio.create_task(serve(server))
            stop = asyncio.Event()
            running = asyncio.create_task(agent.run(stop))
            try:
                await eventually(scanner_online)
                device.send(line(location_label("wh1.aisle.3.bin.1")))
                device.send(line(gs1_item(GTIN_A, lot="L1", count=6), "]C1"))
                device.send(line(command_barcode(Command.PICK)))
                device.send(line(EAN13, "]E0"))
                device.send(b"\x02]E05901234123458\x03\r\n")  # bad check digit
                await eventually(lambda: len(events) == 2)

                device.unplug()  # and back, into count mode, without a restart
                await eventually(lambda: not scanner_online())
                device.plug()
                await eventually(scanner_online)
                device.send(line(command_barcode(Command.COUNT)))
                for _ in range(3):
                    device.send(line(gs1_item(GTIN_A, lot="L1"), "]d2"))
                device.send(line(EAN13, "]E0"))
                device.send(line(command_barcode(Command.END)))
                await eventually(lambda: len(events) == 3)
                await eventually(lambda: agent.outbox is not None and agent.outbox.depth() == 0)
                status = await agent.status()
            finally:
                stop.set()
                await asyncio.wait_for(running, 15)
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving

    received_, picked, counted = events
    assert (received_.biz_step, received_.direction, received_.source) == (
        "receiving",
        "in",
        "serial",
    )
    assert (received_.read_point, received_.biz_location) == ("wh1.aisle.3", "wh1.aisle.3.bin.1")
    assert received_.quantity is not None
    assert (received_.quantity.gtin, received_.quantity.lot, received_.quantity.qty) == (
        GTIN_A,
        "L1",
        6,
    )
    assert (picked.biz_step, picked.direction) == ("picking", "out")
    assert picked.quantity is not None
    assert picked.quantity.gtin == "0" + EAN13
    assert (counted.biz_step, counted.direction) == ("cycle_counting", None)
    assert counted.biz_location == "wh1.aisle.3.bin.1"  # the location survived the replug
    assert counted.quantities is not None
    assert sorted((q.gtin, q.lot, q.qty) for q in counted.quantities) == [
        ("0" + EAN13, None, 1),
        (GTIN_A, "L1", 3),
    ]
    assert agent.counters.scans == 10
    assert agent.counters.scan_events == 3
    assert agent.counters.reader_events["decode_error"] == 1
    [scanner] = [r for r in status.readers if r.name == "handheld-1"]
    assert (scanner.kind, scanner.state) == ("serial", "connected")
    # The server's refusal of the pick is what the scanner's status shows.
    assert scanner.last_error == f"refused by the server: {REFUSAL}"
    assert agent.counters.reader_events["refused_by_server"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("scanner handheld-1: malformed scan") and "5901234123458" in m
        for m in messages
    )
