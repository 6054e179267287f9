"""The stack an end-to-end test runs on, started and torn down in one place.

``running_stack`` runs a scenario's parts on the event loop: a simulated LLRP reader for its
door and one for each of its shelves (real LLRP over TCP), a simulated scanner on a real
pty for each of its handhelds, the server with the demo's settings for the scenario (on
SQLite in the test's folder) and the edge agent with the demo's edge settings, both on the
broker the ``mosquitto`` fixture started. It yields once the server answers, every reader's
inventory runs and the edge has opened every scanner; leaving it stops the edge cleanly,
then the server, then the simulators.

``serving`` is the server alone, for the tests that publish as a gateway themselves or run
the edge another way; ``api_client`` is an HTTP client with a key of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from edge.agent import EdgeAgent
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scanner import ScannerSimulator
from firmware_sim.scenario import Scenario
from server.app import Server
from server.config.settings import ServerSettings
from stockgate.demo_settings import edge_settings, server_settings
from tests.e2e.settle import eventually

START_TIMEOUT_S = 60.0
"""How long the server may take to answer, and a reader to see the edge's inventory."""
API_TIMEOUT_S = 30.0
"""httpx's 5 s default is shorter than a page can take while the server ingests, follows
history and shares two cores with the other tests."""


def api_client(server: Server, key: str, timeout_s: float = API_TIMEOUT_S) -> httpx.AsyncClient:
    """An HTTP client of the running ``server``'s API with ``key``."""
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout_s,
    )


async def start_server(
    tasks: asyncio.TaskGroup, settings: ServerSettings
) -> tuple[Server, asyncio.Task[None]]:
    """A server run in ``tasks``, once it is ready (its API port bound); and its task."""
    server = Server(settings)
    ready = asyncio.Event()
    task = tasks.create_task(server.run(ready), name="server")
    async with asyncio.timeout(START_TIMEOUT_S):
        await ready.wait()
    return server, task


@contextlib.asynccontextmanager
async def serving(settings: ServerSettings) -> AsyncIterator[Server]:
    """A server with ``settings``, ready, until the block ends."""
    async with asyncio.TaskGroup() as tasks:
        server, task = await start_server(tasks, settings)
        yield server
        task.cancel()


@dataclass(frozen=True)
class Stack:
    """The running parts of a scenario's stack."""

    scenario: Scenario
    keys: Mapping[str, str]
    """An API key per role."""
    server: Server
    agent: EdgeAgent
    readers: Mapping[str, ReaderSimulator]
    """The door's reader and each shelf's, by reader name."""
    scanners: Mapping[str, ScannerSimulator]
    """The scenario's scanners, by name."""

    @property
    def door(self) -> ReaderSimulator:
        """The reader of the scenario's (first) door."""
        return self.readers[self.scenario.reader.name]

    def api(self, role: str, timeout_s: float = API_TIMEOUT_S) -> httpx.AsyncClient:
        """An HTTP client of the server's API with the key of ``role``."""
        return api_client(self.server, self.keys[role], timeout_s)


async def _open_readers(
    stack: contextlib.AsyncExitStack, scenario: Scenario
) -> dict[str, ReaderSimulator]:
    specs = [(scenario.reader.name, scenario.reader.antennas)]
    specs += [(shelf.reader.name, shelf.reader.antennas) for shelf in scenario.shelves]
    readers: dict[str, ReaderSimulator] = {}
    for name, antennas in specs:
        readers[name] = await stack.enter_async_context(
            ReaderSimulator(antennas=antennas, name=name, seed=scenario.seed)
        )
    return readers


def _clear_fields(readers: Iterable[ReaderSimulator]) -> None:
    for reader in readers:
        reader.field.clear()


@contextlib.asynccontextmanager
async def running_stack(
    scenario: Scenario, broker_url: str, workdir: Path, roles: Iterable[str] = ("admin",)
) -> AsyncIterator[Stack]:
    """The scenario's simulators, the server and the edge, running until the block ends.

    Args:
        scenario: what the simulators are (door, shelves, scanners) and the settings of
            the server and the edge are made for.
        broker_url: the broker's URL.
        workdir: the server's database, the edge's outbox and the scanners' pty links.
        roles: an API key is made for each (``Stack.keys``).
    """
    keys = {role: secrets.token_urlsafe(24) for role in roles}
    links = {spec.name: workdir / "dev" / spec.name for spec in scenario.scanner_specs}
    async with contextlib.AsyncExitStack() as stack:
        readers = await _open_readers(stack, scenario)
        # What run_scenario(keep_shelves=True) left in a shelf's field is the caller's to
        # take out; done once the edge and the server have stopped, before the readers close.
        stack.callback(_clear_fields, readers.values())
        scanners = {
            spec.name: await stack.enter_async_context(
                ScannerSimulator(links[spec.name], name=spec.name, style=spec.style())
            )
            for spec in scenario.scanner_specs
        }
        door = readers[scenario.reader.name]
        shelf_ports = {name: r.port for name, r in readers.items() if r is not door}
        agent = EdgeAgent(
            edge_settings(scenario, broker_url, workdir, door.port, links, shelf_ports=shelf_ports)
        )
        settings = server_settings(scenario, broker_url, workdir, 0, keys)
        async with asyncio.TaskGroup() as tasks:
            server, serving_task = await start_server(tasks, settings)
            stop = asyncio.Event()
            edge_task = tasks.create_task(agent.run(stop), name="edge")
            for reader in readers.values():
                await reader.wait_inventory(START_TIMEOUT_S)

            async def scanners_open() -> bool:
                status = await agent.status()
                serial = [r for r in status.readers if r.kind == "serial"]
                return len(serial) == len(scanners) and all(r.state == "connected" for r in serial)

            if scanners:
                await eventually(scanners_open, "the edge opening every scanner")
            yield Stack(scenario, keys, server, agent, readers, scanners)
            stop.set()
            await edge_task
            serving_task.cancel()
