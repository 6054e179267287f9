"""Scale-out, on real processes: two ``stockgate server`` instances on one shared MQTT
subscription (``$share/...``) against one PostgreSQL apply a stream exactly once between
them, re-sends and concurrent duplicates included, and both take part."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from server_helpers import VIEWER_KEY, Batches, sgtin

from bench.broker import end_process
from plumbing.broker import free_loopback_port
from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from wire.models import Ack

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
ACK_TIMEOUT_S = 60.0
GATEWAYS = 3
BATCHES_PER_GATEWAY = 12
EVENTS_PER_BATCH = 25


def server_toml(name: str, mqtt_url: str, database_url: str, port: int) -> str:
    return f"""
[mqtt]
url = "{mqtt_url}"
client_id = "stockgate-{name}"
[database]
url = "{database_url}"
[api]
host = "127.0.0.1"
port = {port}
[[api.keys]]
key = "{VIEWER_KEY}"
role = "viewer"
[ingest]
shared_subscription = true
[[read_points]]
id = "wh1.dock.1"
inbound_location = "wh1.receiving"
"""


class Instance:
    """One ``stockgate server --config ...`` child process."""

    def __init__(self, name: str, workdir: Path, mqtt_url: str, database_url: str) -> None:
        self.name = name
        self.port = free_loopback_port()
        self.config = workdir / f"{name}.toml"
        self.log = workdir / f"{name}.log"
        self.config.write_text(server_toml(name, mqtt_url, database_url, self.port))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from stockgate.cli import main; main()",
                    "server",
                    "--config",
                    str(self.config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5.0).text
        found: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r"^(stockgate_events_(?:applied|duplicate)_total) (\S+)$", line)
            if match:
                found[match.group(1)] = float(match.group(2))
        return found

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            # SIGTERM, as systemd stops it (SIGINT may be ignored when run in the background).
            end_process(proc, signal.SIGTERM, STOP_TIMEOUT_S)


@pytest.fixture
def instances(tmp_path: Path, mosquitto: Any, pg_url: str) -> Iterator[list[Instance]]:
    started = [Instance(n, tmp_path, mosquitto.url, pg_url) for n in ("server-a", "server-b")]
    try:
        for instance in started:
            instance.start()  # both at once: their migrations queue on the advisory lock
        deadline = time.monotonic() + START_TIMEOUT_S
        for _ in range(int(START_TIMEOUT_S / 0.1)):
            if all(instance.healthy() for instance in started):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("servers not healthy in time")
        if not all(instance.healthy() for instance in started):
            raise AssertionError("servers not healthy in time")
        yield started
    finally:
        for instance in started:
            instance.stop()


def edge_stream(gateway: str) -> tuple[list[tuple[str, bytes]], dict[str, dict[str, Any]]]:
    """What an edge sends: batches, a re-send of some, and a re-packed overlapping batch.

    Returns:
        The (batch id, payload) messages in sending order and the distinct events by id.
    """
    batches = Batches(gateway=gateway)
    messages: list[tuple[str, bytes]] = []
    distinct: dict[str, dict[str, Any]] = {}
    previous: list[dict[str, Any]] = []
    for number in range(BATCHES_PER_GATEWAY):
        events = [
            batches.event(epc=sgtin(int(f"{gateway[2:]}{number:03d}{n:03d}")))
            if n % 2
            else batches.event(gtin="80614141123458", qty=3)
            for n in range(EVENTS_PER_BATCH)
        ]
        distinct.update((event["event_id"], event) for event in events)
        batch_id = f"{gateway}-b{number}"
        payload = batches.payload(events, batch_id=batch_id)
        messages.append((batch_id, payload))
        if number % 3 == 0:
            messages.append((batch_id, payload))  # a re-send right behind: races the first
        if previous:
            # The edge re-packs unacknowledged events with new ones under a new batch id.
            overlap = previous[EVENTS_PER_BATCH // 2 :] + events[: EVENTS_PER_BATCH // 2]
            repacked = f"{gateway}-r{number}"
            messages.append((repacked, batches.payload(overlap, batch_id=repacked)))
        previous = events
    return messages, distinct


async def publish_and_collect_acks(mqtt_url: str, gateway: str) -> tuple[set[str], set[str]]:
    """Publish one gateway's stream; returns (batch ids sent, batch ids acked)."""
    messages, _ = edge_stream(gateway)
    sent = {batch_id for batch_id, _ in messages}
    acked: set[str] = set()
    async with MqttClient(MqttSettings(url=mqtt_url), f"edge-{gateway}") as edge:
        await edge.wait_connected(10)
        await edge.subscribe(f"stockgate/v1/wh1/{gateway}/ack")
        for _, payload in messages:
            await edge.publish(f"stockgate/v1/wh1/{gateway}/events", payload)
        async with asyncio.timeout(ACK_TIMEOUT_S):
            async for message in edge.messages():
                acked.update(b.batch_id for b in Ack.model_validate_json(message.payload).batches)
                if acked >= sent:
                    break
    return sent, acked


WARM_UP_GATEWAY = "gw0"
WARM_UP_GTIN = "10614141123459"


async def until_both_subscribed(instances: list[Instance], mqtt_url: str) -> int:
    """Send one-event batches until each instance has applied one; returns how many."""
    batches = Batches(gateway=WARM_UP_GATEWAY)
    async with MqttClient(MqttSettings(url=mqtt_url), "edge-warm-up") as edge:
        await edge.wait_connected(10)
        for sent in range(1, 201):
            payload = batches.payload([batches.event(gtin=WARM_UP_GTIN, qty=1)])
            await edge.publish(f"stockgate/v1/wh1/{WARM_UP_GATEWAY}/events", payload)
            await asyncio.sleep(0.05)
            counts = [await asyncio.to_thread(instance.metrics) for instance in instances]
            applied = [count.get("stockgate_events_applied_total", 0) for count in counts]
            # Both took some, and none is still on its way (so the stream starts clean).
            if all(applied) and sum(applied) == sent:
                return sent
    raise AssertionError("an instance never took a batch of the shared subscription")


async def test_two_instances_apply_a_shared_stream_exactly_once(
    instances: list[Instance], mosquitto: Any, pg_url: str
) -> None:
    # Healthy means connected; wait until both also hold the shared subscription.
    warm_up = await until_both_subscribed(instances, mosquitto.url)
    before = [await asyncio.to_thread(instance.metrics) for instance in instances]
    gateways = [f"gw{n}" for n in range(1, GATEWAYS + 1)]
    results = await asyncio.gather(*(publish_and_collect_acks(mosquitto.url, g) for g in gateways))
    distinct = {k: v for g in gateways for k, v in edge_stream(g)[1].items()}
    sent_events = sum(
        len(json.loads(payload)["events"]) for g in gateways for _, payload in edge_stream(g)[0]
    )

    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        stream = "event_id NOT LIKE 'gw0:%'"
        ledger_rows = await conn.fetchval(f"SELECT count(*) FROM ledger WHERE {stream}")
        distinct_ledger_events = await conn.fetchval(
            f"SELECT count(DISTINCT event_id) FROM ledger WHERE {stream}"
        )
        seen = await conn.fetchval(f"SELECT count(*) FROM seen_events WHERE {stream}")
        received = await conn.fetchval(
            f"SELECT sum(quantity) FROM ledger WHERE kind = 'receipt' AND {stream}"
        )
        on_hand = await conn.fetchval("SELECT sum(on_hand) FROM balances")
        units = await conn.fetchval("SELECT count(*) FROM units")
    finally:
        await conn.close()
    after = [await asyncio.to_thread(instance.metrics) for instance in instances]

    def delta(name: str) -> list[float]:
        return [a[name] - b[name] for a, b in zip(after, before, strict=True)]

    for sent, acked in results:
        assert acked >= sent  # every batch acked, re-sends included
    quantity_events = sum(1 for event in distinct.values() if "quantity" in event)
    assert ledger_rows == distinct_ledger_events == seen == len(distinct)
    expected = quantity_events * 3 + (len(distinct) - quantity_events)
    assert received == expected
    assert on_hand == expected + warm_up
    assert units == len(distinct) - quantity_events
    applied = delta("stockgate_events_applied_total")
    assert sum(applied) == len(distinct)
    assert sum(delta("stockgate_events_duplicate_total")) == sent_events - len(distinct)
    assert all(count > 0 for count in applied), f"one instance applied nothing: {applied}"
