"""Handheld scanners end to end, one meaning per scan, on real parts.

Simulated scanners on real ptys (firmware-sim) -> edge agent (pyserial on the tty) -> a
real Mosquitto -> server on SQLite -> HTTP API. The bundled ``handheld`` scenario receives
into a scanned bin and into an inbound location, moves (source, items, destination),
picks and counts, and scans a pallet's SSCC label and GS1 Digital Link QR codes (the
pallet's contents recorded first through ``POST /api/v1/aggregations``); its ground truth
(``firmware_sim.truth``) says the stock by location.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.agent import EdgeAgent
from firmware_sim.scenario import Scenario, bundled_scenario, load_scenario
from firmware_sim.scenario_run import run_scenario
from stockgate.demo_api import fetch_stock
from tests.e2e.settle import eventually
from tests.e2e.stack import running_stack

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SETTLE_TIMEOUT_S = 60.0


async def play_with_handhelds(
    scenario: Scenario, broker_url: str, workdir: Path
) -> tuple[dict[tuple[str, str], int], list[dict[str, Any]], EdgeAgent]:
    """Run ``scenario`` through scanners on ptys, the edge and the server; the stock and
    the alerts the API serves once the edge has nothing left to send, and the agent."""
    async with running_stack(scenario, broker_url, workdir) as stack, stack.api("admin") as api:
        for sscc, epcs in scenario.aggregations().items():
            response = await api.post(
                "/api/v1/aggregations", json={"parent": sscc, "children": list(epcs)}
            )
            assert response.status_code == 200, response.text
        await run_scenario(scenario, stack.door, scanners=stack.scanners)
        sent = sum(len(s.sent) for s in stack.scanners.values())
        agent = stack.agent

        async def settled() -> bool:
            outbox = agent.outbox
            heard = agent.counters.scans + agent.counters.reader_events["decode_error"]
            return heard >= sent and outbox is not None and outbox.depth() == 0

        await eventually(settled, "the edge sending every scan's event", SETTLE_TIMEOUT_S)
        stock = await fetch_stock(api)
        response = await api.get("/api/v1/alerts", params={"limit": 500})
        assert response.status_code == 200, response.text
        alerts: list[dict[str, Any]] = response.json()["items"]
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
