"""Handheld scanners end to end, one meaning per scan, on real parts.

Simulated scanners on real ptys (firmware-sim) -> edge agent (pyserial on the tty) -> a
real Mosquitto -> server on SQLite -> HTTP API. The bundled ``handheld`` scenario receives
into a scanned bin and into an inbound location, moves (source, items, destination),
picks and counts, and scans a pallet's SSCC label and GS1 Digital Link QR codes (the
pallet's contents recorded first through ``POST /api/v1/aggregations``); its ground truth
(``firmware_sim.truth``) says the stock by location.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.agent import EdgeAgent
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scanner import ScannerSimulator
from firmware_sim.scenario import Scenario, bundled_scenario, load_scenario
from firmware_sim.scenario_run import run_scenario
from server.app import Server
from stockgate.demo_api import fetch_stock
from stockgate.demo_settings import edge_settings, server_settings

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SETTLE_TIMEOUT_S = 60.0


async def _eventually(check: Any, what: str, timeout: float = SETTLE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {timeout} s")


async def play_with_handhelds(
    scenario: Scenario, broker_url: str, workdir: Path, **server_extra: Any
) -> tuple[dict[tuple[str, str], int], list[dict[str, Any]], EdgeAgent]:
    """Run ``scenario`` through scanners on ptys, the edge and the server; the stock and
    the alerts the API serves once the edge has nothing left to send, and the agent."""
    keys = {"admin": secrets.token_urlsafe(24)}
    links = {spec.name: workdir / "dev" / spec.name for spec in scenario.scanner_specs}
    settings = server_settings(scenario, broker_url, workdir, 0, keys)
    if server_extra:
        settings = settings.model_copy(update=server_extra)
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(
            ReaderSimulator(
                antennas=scenario.reader.antennas, name=scenario.reader.name, seed=scenario.seed
            )
        )
        scanners = {
            spec.name: await stack.enter_async_context(
                ScannerSimulator(links[spec.name], name=spec.name, style=spec.style())
            )
            for spec in scenario.scanner_specs
        }
        server = Server(settings)
        agent = EdgeAgent(edge_settings(scenario, broker_url, workdir, sim.port, links))
        ready, stop = asyncio.Event(), asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            server_task = tasks.create_task(server.run(ready))
            async with asyncio.timeout(60):
                await ready.wait()
            edge_task = tasks.create_task(agent.run(stop))
            await sim.wait_inventory(60)

            async def scanners_open() -> bool:
                status = await agent.status()
                serial = [r for r in status.readers if r.kind == "serial"]
                return len(serial) == len(scanners) and all(r.state == "connected" for r in serial)

            await _eventually(scanners_open, "the edge opening every scanner")
            headers = {"Authorization": f"Bearer {keys['admin']}"}
            base_url = f"http://127.0.0.1:{server.api_port}"
            async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as api:
                for sscc, epcs in scenario.aggregations().items():
                    response = await api.post(
                        "/api/v1/aggregations", json={"parent": sscc, "children": list(epcs)}
                    )
                    assert response.status_code == 200, response.text
                await run_scenario(scenario, sim, scanners=scanners)
                sent = sum(len(s.sent) for s in scanners.values())

                async def settled() -> bool:
                    outbox = agent.outbox
                    heard = agent.counters.scans + agent.counters.reader_events["decode_error"]
                    return heard >= sent and outbox is not None and outbox.depth() == 0

                await _eventually(settled, "the edge sending every scan's event")
                stock = await fetch_stock(api)
                response = await api.get("/api/v1/alerts", params={"limit": 500})
                assert response.status_code == 200, response.text
                alerts: list[dict[str, Any]] = response.json()["items"]
            stop.set()
            await edge_task
            server_task.cancel()
    return stock, alerts, agent


async def test_each_scan_mode_puts_stock_where_the_ground_truth_says(
    mosquitto: Any, tmp_path: Path
) -> None:
    scenario = load_scenario(bundled_scenario("handheld"))
    truth = scenario.ground_truth()
    stock, alerts, _ = await play_with_handhelds(scenario, mosquitto.url, tmp_path)

    def at(location: str) -> dict[str, int]:
        return {gtin: n for (gtin, where), n in stock.items() if where == location and n}

    def expected(location: str) -> dict[str, int]:
        return {gtin: n for (gtin, where), n in truth.stock.items() if where == location}

    # receive: into the scanned bin, and into the inbound location when none was scanned
    # (handheld-2's read point wh1.returns receives into wh1.returns)
    assert at("wh1.returns") == expected("wh1.returns") != {}
    # move: from the source bin to the destination bin
    assert at("wh1.a02.b01") == expected("wh1.a02.b01") != {}
    # pick: from the scanned bin (and the inbound location) to the pick zone
    assert at("wh1.staging") == expected("wh1.staging") != {}
    # count: the counted bin holds what was counted
    (count,) = truth.counts
    assert at("wh1.a01.b01") == expected("wh1.a01.b01") == count.counted
    # SSCC: the pallet label received its three tea cases into a bin, and its Digital
    # Link QR code moved them on; a coffee Digital Link (AI 01 + 30) received two
    assert at("wh1.a04.b01") == expected("wh1.a04.b01") == {"00614141000326": 3}
    assert at("wh1.a03.b01") == expected("wh1.a03.b01") == {"00614141000319": 2}
    # and nothing anywhere else: no phantom stock at the dock's inbound location
    assert {key: n for key, n in stock.items() if n} == truth.stock
    opened = {(a["kind"], a["subject"]) for a in alerts}
    assert {(a.kind, a.subject) for a in truth.alerts if a.kind == "unknown_item"} <= opened
    assert any(kind == "count_discrepancy" for kind, _ in opened)


async def test_a_negative_pick_under_both_policies(mosquitto: Any, tmp_path: Path) -> None:
    """wh1 allows negative stock (alert), wh2 refuses it (dead letter, scanner told)."""
    scenario = load_scenario(bundled_scenario("negative"))
    truth = scenario.ground_truth()
    assert truth.refused, "the scenario must make the server refuse a pick"
    stock, alerts, agent = await play_with_handhelds(scenario, mosquitto.url, tmp_path)

    assert {key: n for key, n in stock.items() if n} == truth.stock
    assert any(n < 0 for n in stock.values()), "the allowed pick leaves a negative balance"
    opened = {(a["kind"], a["subject"]) for a in alerts if a["closed_at"] is None}
    expected = {(a.kind, a.subject) for a in truth.alerts if a.kind == "negative_stock"}
    assert expected
    assert expected <= opened
    # The refused pick's scanner shows why in the gateway's status.
    status = await agent.status()
    shown = {r.name: r.last_error or "" for r in status.readers if r.kind == "serial"}
    for scanner, _, location in truth.refused:
        assert shown[scanner].startswith("refused by the server: negative stock refused")
        assert location in shown[scanner]
    assert agent.counters.reader_events["refused_by_server"] == len(truth.refused)
