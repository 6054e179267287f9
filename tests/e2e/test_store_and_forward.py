"""Store-and-forward on real parts: SIGKILL of the edge process, and a broker outage.

What is guaranteed (edge/agent.py, edge/buffer/outbox.py): an event committed to the
outbox survives anything, a crash included, and reaches the server exactly once in
effect (re-sent until acknowledged, skipped by event id on the server). Reads of a pass
still open in memory (the tag not yet quiet for ``departure_timeout_s``) are not events
yet; a crash loses those passes by design. So the SIGKILL lands after the passes of the
first half of the scenario are committed, and the second half is played after the
restart: the server's stock must then equal the whole scenario's ground truth.

The broker outage test stops a real Mosquitto for a few seconds (standing in for
"minutes": what matters is that events pile up while nothing can be delivered) while a
thousand passes are read, then starts it again: the backlog drains at the
configured rate, nothing is lost and nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from firmware_sim.fake_reader import FakeLlrpReader, FakeTag
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scenario import Scenario, parse_scenario
from firmware_sim.scenario_run import run_scenario
from plumbing.settings import load
from server.config.settings import ServerSettings
from stockgate.demo_api import fetch_stock
from tests.e2e.settle import eventually
from tests.e2e.stack import api_client, serving
from wire.identifiers import sgtin96_hex

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SITE = "wh1"
READ_POINT = "wh1.dock.1"
INBOUND = "wh1.receiving"
STOCKGATE = Path(sys.executable).parent / "stockgate"
API_TIMEOUT_S = 10.0

PALLETS = """
name = "{name}"
site = "wh1"
read_point = "wh1.dock.1"
inbound_location = "wh1.receiving"
seed = 23
[reader]
name = "dock1"
antennas = 2
outside_antennas = [1]
inside_antennas = [2]
[[items]]
id = "soap"
name = "Soap"
company_prefix = "0614141"
item_reference = "400001"
[[items]]
id = "tea"
name = "Tea"
company_prefix = "0614141"
item_reference = "400002"
[[pallets]]
id = "P1"
cases = [{{ item = "soap", count = 4 }}]
[[pallets]]
id = "P2"
cases = [{{ item = "tea", count = 3 }}, {{ item = "soap", count = 3 }}]
[[pallets]]
id = "P3"
cases = [{{ item = "tea", count = 3 }}]
"""


def scenario(name: str, passes: list[tuple[float, str, str]]) -> Scenario:
    text = PALLETS.format(name=name) + "".join(
        f'[[passes]]\nat_s = {at}\npallet = "{pallet}"\ndirection = "{direction}"\n'
        for at, pallet, direction in passes
    )
    return parse_scenario(text, name)


def server_settings(broker_url: str, workdir: Path, key: str) -> ServerSettings:
    return load(
        ServerSettings,
        mqtt={"url": broker_url},
        database={"url": f"sqlite+aiosqlite:///{workdir / 'server.db'}"},
        api={"host": "127.0.0.1", "port": 0, "keys": [{"key": key, "role": "admin"}]},
        read_points=[{"id": READ_POINT, "inbound_location": INBOUND, "outbound": "ship"}],
    )


async def movements(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        response = await api.get("/api/v1/movements", params=params)
        response.raise_for_status()
        page = response.json()
        rows.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError("movement pages never ended")


# --- SIGKILL of the edge process ----------------------------------------------------------------


def edge_toml(path: Path, broker_url: str, outbox: Path, reader_port: int) -> None:
    path.write_text(
        f"""
[gateway]
id = "gw-kill"
site = "{SITE}"
[mqtt]
url = "{broker_url}"
[buffer]
path = "{outbox}"
commit_interval_ms = 50
[[llrp]]
name = "dock1"
host = "127.0.0.1"
port = {reader_port}
keepalive_s = 1
backoff_initial_s = 0.1
backoff_max_s = 0.5
[[portals]]
read_point = "{READ_POINT}"
reader = "dock1"
outside_antennas = [1]
inside_antennas = [2]
departure_timeout_s = 1.0
[status]
interval_s = 1
"""
    )


def committed(outbox: Path) -> tuple[int, int]:
    """(events ever committed, events held) of an outbox file, read as a bystander."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)) as db:
            (next_seq,) = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
            (held,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
    except (sqlite3.Error, TypeError):
        return 0, 0
    return int(next_seq) - 1, int(held)


def start_edge(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [str(STOCKGATE), "edge", "--config", str(config), "--log-level", "info"],
            stdout=sink,
            stderr=sink,
        )


async def test_sigkill_loses_nothing_committed(mosquitto: Any, tmp_path: Path) -> None:
    before = scenario("before-kill", [(0.0, "P1", "in"), (3.65, "P2", "in")])
    after = scenario("after-kill", [(0.0, "P3", "in"), (3.65, "P3", "out")])
    first, second = before.ground_truth(), after.ground_truth()
    expected = Counter(first.stock)
    expected.update(second.stock)
    units_before = len(first.received)

    key = secrets.token_urlsafe(24)
    outbox = tmp_path / "edge-outbox.db"
    config, log = tmp_path / "edge.toml", tmp_path / "edge.log"
    async with (
        ReaderSimulator(antennas=2, name="dock1", seed=before.seed) as sim,
        serving(server_settings(mosquitto.url, tmp_path, key)) as server,
        api_client(server, key, API_TIMEOUT_S) as api,
    ):
        edge_toml(config, mosquitto.url, outbox, sim.port)
        edge = start_edge(config, log)
        try:
            await sim.wait_inventory(30)
            await run_scenario(before, sim)
            # Kill the moment the last pass of the first half is committed: its events
            # are on disk and, most likely, not yet acknowledged by the server.
            for _ in range(4000):  # 20 s at most
                if committed(outbox)[0] >= units_before:
                    break
                await asyncio.sleep(0.005)
            edge.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(edge.wait, 10) == -signal.SIGKILL
            done, held = committed(outbox)
            assert done == units_before, log.read_text()[-3000:]

            # The reader notices the dead client; a new edge process takes over.
            await eventually(
                lambda: asyncio.sleep(0, not sim.connected), "reader session ended", 10
            )
            edge = start_edge(config, log)
            await sim.wait_inventory(30)
            await run_scenario(after, sim)

            async def settled() -> bool:
                return await fetch_stock(api) == {k: n for k, n in expected.items() if n}

            await eventually(settled, "server stock equal to the ground truth", 30)
            rows = await movements(api)
        finally:
            edge.terminate()
            await asyncio.to_thread(edge.wait, 10)

    receipts = Counter(row["epc"] for row in rows if row["kind"] == "receipt")
    shipments = Counter(row["epc"] for row in rows if row["kind"] == "shipment")
    assert set(receipts) == first.received | second.received
    assert set(shipments) == second.shipped
    assert max(receipts.values()) == 1, "a re-sent event was applied twice"
    assert max(shipments.values()) == 1
    assert len(rows) == len(first.received) + len(second.received) + len(second.shipped)
    assert "outbox" in log.read_text(), "the restarted edge reopened its outbox"
    print(f"SIGKILL with {held} of {done} committed events not yet acknowledged")


# --- a broker outage ---------------------------------------------------------------------------


def tags(first: int, count: int) -> list[str]:
    return [
        sgtin96_hex(f"urn:epc:id:sgtin:0614141.500001.{n}") for n in range(first, first + count)
    ]


def crossings(epcs: list[str]) -> list[FakeTag]:
    """Each tag read twice outside, then twice inside: one inbound pass each."""
    now = time.time_ns() // 1000
    return [
        FakeTag(epc, antenna=1 if step < 2 else 2, first_seen_us=now + step * 100_000)
        for step in range(4)
        for epc in epcs
    ]


async def test_broker_outage_backlog_drains_in_order_exactly_once(
    mosquitto: Any, tmp_path: Path
) -> None:
    key = secrets.token_urlsafe(24)
    settings = EdgeSettings(
        gateway={"id": "gw-outage", "site": SITE},
        mqtt={"url": mosquitto.url, "keepalive_s": 5},
        buffer={
            "path": tmp_path / "outbox.db",
            "commit_interval_ms": 50,
            "batch_size": 100,
            "drain_rate_per_s": 500,
            "resend_after_s": 5,
        },
        llrp=[{"name": "dock1", "host": "127.0.0.1", "port": 1, "keepalive_s": 1}],
        portals=[
            {
                "read_point": READ_POINT,
                "reader": "dock1",
                "outside_antennas": [1],
                "inside_antennas": [2],
                "departure_timeout_s": 0.5,
            }
        ],
        status={"interval_s": 0.5},
    )
    async with (
        FakeLlrpReader(max_antennas=2) as fake,
        serving(server_settings(mosquitto.url, tmp_path, key)) as server,
        api_client(server, key, API_TIMEOUT_S) as api,
        asyncio.TaskGroup() as tasks,
    ):
        llrp = settings.llrp[0].model_copy(update={"port": fake.port})
        agent = EdgeAgent(settings.model_copy(update={"llrp": [llrp]}))
        stop = asyncio.Event()
        edge = tasks.create_task(agent.run(stop))

        async def on_hand() -> int:
            return sum((await fetch_stock(api)).values())

        async def drained(count: int) -> bool:
            outbox = agent.outbox
            return outbox is not None and outbox.depth() == 0 and await on_hand() == count

        await fake.wait_connections(1, timeout=10)
        await eventually(lambda: asyncio.sleep(0, agent.publisher is not None), "publisher", 10)
        await fake.send_report(crossings(tags(1, 100)))
        await eventually(lambda: drained(100), "first wave applied", 30)

        await asyncio.to_thread(mosquitto.stop)
        await fake.send_report(crossings(tags(101, 1000)))
        await eventually(
            lambda: asyncio.sleep(0, agent.counters.passes == 1100), "passes stored", 20
        )
        await eventually(
            lambda: asyncio.sleep(0, agent.outbox is not None and agent.outbox.pending == 0),
            "backlog committed",
            10,
        )
        assert agent.outbox is not None
        assert agent.outbox.depth() == 1000
        assert not agent.mqtt_connected
        await asyncio.sleep(2.0)  # the outage lasts a few seconds more
        assert (await agent.check_health() or 0) >= 2.0, "the backlog has aged"

        await asyncio.to_thread(mosquitto.start)
        await eventually(lambda: drained(1100), "backlog drained and applied", 60)
        rows = await movements(api)
        stop.set()
        await edge

    epcs = Counter(row["epc"] for row in rows)
    assert len(epcs) == 1100
    assert set(epcs.values()) == {1}, "each pass applied once"
    assert {row["kind"] for row in rows} == {"receipt"}
    assert agent.publisher is not None
    assert agent.publisher.throttled_s > 0, "the drain went through the rate limit"
