"""`stockgate demo`: the whole system on one machine, driven by a scenario with a known truth.

Everything runs in this process and on loopback: an embedded broker (amqtt) on a free
port, the server on a fresh SQLite file, a simulated LLRP dock door and a simulated LLRP
shelf reader (firmware-sim, real LLRP over TCP on free ports), a simulated handheld
scanner on a pseudo-terminal, and an edge agent connected to all of them. The bundled
``demo`` scenario moves pallets through the door while the shelf reader counts its shelf
and the handheld receives and picks. Progress is read back through the public HTTP API,
the same way an operator would, so what the terminal shows is what the API serves.

With ``--duration`` the demo waits until the edge holds no open pass and no unacknowledged
event, prints stock by item and location beside the scenario's ground truth, and the
shelves' shrinkage beside the truth's, and exits 0 only when they agree. The duration must
leave room for the whole scenario plus the edge's departure timeout; a shorter one is
refused up front rather than ending with a table that cannot match.

The server's and the edge's settings come from ``stockgate.demo_settings``; what the demo
does through the API (master data in, stock and shrinkage back) from ``stockgate.demo_api``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import httpx

from edge.agent import EdgeAgent
from edge.pipeline import PassTracker
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scanner import ScannerSimulator
from firmware_sim.scenario import bundled_scenario, load_scenario
from firmware_sim.scenario_plan import ScenarioEvent
from firmware_sim.scenario_run import run_scenario
from plumbing.broker import EmbeddedBroker
from server.app import Server
from stockgate.demo_api import (
    fetch_shrinkage,
    fetch_stock,
    load_items,
    load_locations,
    shrinkage_lines,
    staged_units_moved,
    stock_table,
)
from stockgate.demo_settings import edge_settings, server_settings

SETTLE_MARGIN_S = 6.0
"""Time after the last pass for the departure timeout, the commit, the batch and its Ack."""
SETTLE_TIMEOUT_S = 30.0
PROGRESS_INTERVAL_S = 2.0
INVENTORY_TIMEOUT_S = 15.0
API_TIMEOUT_S = 30.0
"""The demo's own API calls (loading items, the progress line, the final table): httpx's
5 s default timed out loading the items on a loaded machine."""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Progress:
    """Prints scenario steps and what the server has applied, as the API reports it."""

    def __init__(self, out: TextIO, started: float) -> None:
        self._out = out
        self._started = started

    def say(self, text: str) -> None:
        self._out.write(f"[{time.monotonic() - self._started:6.1f}s] {text}\n")
        self._out.flush()

    def scenario_event(self, event: ScenarioEvent) -> None:
        if event.kind == "shelf":
            self.say(f"shelf {event.target}: {event.detail}")
        elif event.kind == "scan":
            self.say(f"{event.target} scans {event.detail}")
        elif event.kind == "pass_start":
            self.say(f"pallet {event.pallet} moving {event.direction} through the door")
        elif event.kind == "pass_end":
            self.say(f"pallet {event.pallet} has left the read zone")
        elif event.kind == "staged_start":
            self.say(f"pallet {event.pallet} staged on the {event.side} side of the door")
        elif event.kind == "done":
            self.say("scenario finished; waiting for the last passes to settle")

    async def watch(self, api: httpx.AsyncClient, agent: EdgeAgent) -> None:
        last = ""
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            with contextlib.suppress(httpx.HTTPError):
                response = await api.get("/api/v1/movements", params={"limit": 1})
                stock = await fetch_stock(api)
                if response.is_success:
                    units = sum(stock.values())
                    outbox = agent.outbox.depth() if agent.outbox is not None else 0
                    line = (
                        f"edge: {agent.counters.reads} reads, {agent.counters.passes} passes | "
                        f"outbox {outbox} | server: {units} units on hand"
                    )
                    if line != last:
                        self.say(line)
                        last = line


async def _scanners_open(agent: EdgeAgent, count: int) -> bool:
    """True once the edge has opened ``count`` scanners (within ``INVENTORY_TIMEOUT_S``)."""
    deadline = time.monotonic() + INVENTORY_TIMEOUT_S
    while time.monotonic() < deadline:
        status = await agent.status()
        serial = [r for r in status.readers if r.kind == "serial" and r.state == "connected"]
        if len(serial) >= count:
            return True
        await asyncio.sleep(0.1)
    return False


async def _settled(agent: EdgeAgent, deadline: float) -> bool:
    """True once the edge holds no open pass and no event waiting for an Ack."""
    while time.monotonic() < deadline:
        outbox = agent.outbox
        # Door passes only: a shelf's zone holds the cases on it for as long as they are.
        open_passes = sum(len(t) for t in agent.trackers if isinstance(t, PassTracker))
        if outbox is not None and open_passes == 0 and outbox.depth() == 0:
            return True
        await asyncio.sleep(0.2)
    return False


async def run_demo(
    duration: float | None,
    api_port: int = 8000,
    *,
    out: TextIO | None = None,
    scenario_path: Path | None = None,
    on_ready: Callable[[str, dict[str, str]], None] | None = None,
) -> int:
    """Run the demo; the exit status is 0 when the final stock matches the ground truth."""
    import sys

    out = out or sys.stdout
    scenario = load_scenario(scenario_path or bundled_scenario("demo"))
    truth = scenario.ground_truth()
    needed = scenario.duration_s + SETTLE_MARGIN_S
    if duration is not None and duration < needed:
        out.write(
            f"error: --duration must be at least {needed:.0f} s: the scenario takes "
            f"{scenario.duration_s:.0f} s and the last pass needs time to settle\n"
        )
        return 2
    if api_port and not _port_free(api_port):
        out.write(f"port {api_port} is taken; the API will listen on a free port instead\n")
        api_port = 0
    started = time.monotonic()
    progress = _Progress(out, started)
    workdir = Path(tempfile.mkdtemp(prefix="stockgate-demo-"))
    keys = {"admin": secrets.token_urlsafe(24), "viewer": secrets.token_urlsafe(24)}
    names = {item.gtin: item.name for item in scenario.items}

    links = {spec.name: workdir / "dev" / spec.name for spec in scenario.scanner_specs}
    async with contextlib.AsyncExitStack() as stack:
        broker = await stack.enter_async_context(EmbeddedBroker())
        sim = await stack.enter_async_context(
            ReaderSimulator(
                antennas=scenario.reader.antennas, name=scenario.reader.name, seed=scenario.seed
            )
        )
        shelf_sims = {
            reader.name: await stack.enter_async_context(
                ReaderSimulator(antennas=reader.antennas, name=reader.name, seed=scenario.seed)
            )
            for reader in scenario.shelf_readers()
        }
        scanners = {
            spec.name: await stack.enter_async_context(
                ScannerSimulator(links[spec.name], name=spec.name, style=spec.style())
            )
            for spec in scenario.scanner_specs
        }
        server = Server(server_settings(scenario, broker.url, workdir, api_port, keys))
        agent = EdgeAgent(
            edge_settings(
                scenario,
                broker.url,
                workdir,
                sim.port,
                links,
                shelf_ports={name: shelf.port for name, shelf in shelf_sims.items()},
            )
        )
        ready = asyncio.Event()
        stop_edge = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            server_task = tasks.create_task(server.run(ready), name="demo-server")
            await ready.wait()
            base_url = f"http://127.0.0.1:{server.api_port}"
            admin = {"Authorization": f"Bearer {keys['admin']}"}
            async with httpx.AsyncClient(
                base_url=base_url, headers=admin, timeout=API_TIMEOUT_S
            ) as master:
                loaded = await load_items(master, scenario)
                places = await load_locations(master, scenario)
            out.write(
                f"stockgate demo — scenario {scenario.name!r}: {scenario.description}\n"
                f"  console    {base_url}/  (sign in with a key below)\n"
                f"  API        {base_url}/api/v1  (OpenAPI: {base_url}/docs)\n"
                f"  items      {loaded} of the scenario's {len(scenario.items)} loaded, "
                f"{places} location(s) named\n"
                f"  admin key  {keys['admin']}\n"
                f"  viewer key {keys['viewer']}\n"
                f"  try: curl -H 'Authorization: Bearer {keys['viewer']}' {base_url}/api/v1/stock\n"
                f"  broker {broker.url}, simulated reader 127.0.0.1:{sim.port}, data in {workdir}\n"
            )
            for shelf in scenario.shelves:
                out.write(
                    f"  shelf      {shelf.read_point} over {shelf.location}: reader "
                    f"{shelf.reader.name} on 127.0.0.1:{shelf_sims[shelf.reader.name].port}; "
                    f"a case gone and read nowhere for {shelf.missing_after_s:g} s is missing\n"
                )
            for name, scanner in scanners.items():
                out.write(f"  handheld   {name} on {scanner.path}\n")
            out.flush()
            if on_ready is not None:
                on_ready(base_url, keys)
            edge_task = tasks.create_task(agent.run(stop_edge), name="demo-edge")
            await sim.wait_inventory(INVENTORY_TIMEOUT_S)
            for shelf_sim in shelf_sims.values():
                await shelf_sim.wait_inventory(INVENTORY_TIMEOUT_S)
            readers = ", ".join([scenario.reader.name, *shelf_sims])
            progress.say(f"edge agent connected to readers {readers}; inventory running")
            if scanners and not await _scanners_open(agent, len(scanners)):
                progress.say("the edge has not opened every scanner; their scans may be lost")
            headers = {"Authorization": f"Bearer {keys['viewer']}"}
            async with httpx.AsyncClient(
                base_url=base_url, headers=headers, timeout=API_TIMEOUT_S
            ) as api:
                watcher = tasks.create_task(progress.watch(api, agent), name="demo-progress")
                await run_scenario(
                    scenario,
                    {sim.name: sim, **shelf_sims},
                    progress.scenario_event,
                    scanners=scanners,
                    # Cases left on a shelf are still there (and read) while the API serves.
                    keep_shelves=True,
                )
                settled = await _settled(agent, time.monotonic() + SETTLE_TIMEOUT_S)
                if not settled:
                    progress.say("the edge did not settle in time; the table may be incomplete")
                actual = await fetch_stock(api)
                table, agree = stock_table(actual, truth, names)
                moved = await staged_units_moved(api, truth)
                out.write("\nStock by item and location (API) vs the scenario's ground truth:\n")
                out.write(table + "\n")
                out.write(
                    f"staged pallet(s): {len(truth.staged)} units read on one side only, "
                    f"{len(moved)} of them in the ledger (must be 0)\n"
                )
                agree = agree and not moved
                if scenario.shelves:
                    shrinkage, same = shrinkage_lines(await fetch_shrinkage(api), truth)
                    out.write(
                        "shelf shrinkage (GET /api/v1/reports/shrinkage) vs the ground truth:\n"
                    )
                    out.write("\n".join(shrinkage) + "\n")
                    agree = agree and same
                out.write(
                    "stock matches the ground truth\n"
                    if agree
                    else "stock DIFFERS from the ground truth\n"
                )
                out.flush()
                if duration is None:
                    progress.say("the API keeps serving; press Ctrl-C to stop")
                    await asyncio.Event().wait()
                else:
                    remaining = started + duration - time.monotonic()
                    if remaining > 0:
                        await asyncio.sleep(remaining)
                watcher.cancel()
            stop_edge.set()
            await edge_task
            server_task.cancel()
    return 0 if agree else 1
