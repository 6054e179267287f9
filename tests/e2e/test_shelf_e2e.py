"""A shelf reader keeps the books right, end to end, on real parts.

Simulated LLRP readers (firmware-sim: the shelf's and the dock door's, real LLRP over TCP)
and a handheld on a real pty -> edge agent (the shelf as a ``[[zones]]`` read point) -> a
real Mosquitto -> server on SQLite (the shelf's read point with ``missing_after_s``, the
alert sweep every half second) -> HTTP API. The bundled ``shelf`` scenario picks a case
with a scan, has two stolen, one put back in time and one found again after it was
recorded missing, and puts new cases on the shelf; its ground truth
(``firmware_sim.truth``) says the stock by location and the shrinkage per shelf and item.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.scenario import bundled_scenario, load_scenario
from firmware_sim.scenario_run import run_scenario
from stockgate.demo_api import fetch_stock
from tests.e2e.settle import eventually
from tests.e2e.stack import running_stack

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

SETTLE_TIMEOUT_S = 60.0


async def test_a_shelf_reader_counts_continuously_and_stock_is_the_ground_truth(
    mosquitto: Any, tmp_path: Path
) -> None:
    scenario = load_scenario(bundled_scenario("shelf"))
    truth = scenario.ground_truth()
    (shelf,) = scenario.shelves
    assert truth.missing, "the scenario must lose cases"
    assert truth.shrinkage
    async with (
        running_stack(scenario, mosquitto.url, tmp_path) as stack,
        stack.api("admin") as api,
    ):
        # Cases left on the shelf stay there (read on) until the checks are done.
        await run_scenario(scenario, stack.readers, scanners=stack.scanners, keep_shelves=True)
        agent = stack.agent

        async def report() -> list[dict[str, Any]]:
            response = await api.get("/api/v1/reports/shrinkage")
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        async def settled() -> bool:
            outbox = agent.outbox
            heard = len(stack.scanners["handheld-1"].sent)
            if outbox is None or outbox.depth() or agent.counters.scans < heard:
                return False
            rows = await report()
            recorded = {(r["read_point"], r["location"], r["gtin"]): r["missing"] for r in rows}
            stock = {k: n for k, n in (await fetch_stock(api)).items() if n}
            return recorded == truth.shrinkage and stock == truth.stock

        # Wait for the sweep and the last arrival; then the checks below say what
        # differs, if anything still does.
        with contextlib.suppress(AssertionError):
            await eventually(
                settled, "the books agreeing with the ground truth", SETTLE_TIMEOUT_S, 0.2
            )
        stock = await fetch_stock(api)
        rows = await report()
        units = {
            urn: (await api.get(f"/api/v1/units/{urn}")).json()
            for urn in sorted({u.urn for u in scenario.units})
        }
        response = await api.get("/api/v1/alerts", params={"state": "all", "limit": 500})
        assert response.status_code == 200, response.text
        alerts = response.json()["items"]
        csv_text = (await api.get("/api/v1/reports/shrinkage.csv")).text

    # Stock by location is the ground truth: the pick went to the pick zone, the stolen
    # cases left the shelf's books, the ones put back or found again are on it.
    assert {key: n for key, n in stock.items() if n} == truth.stock
    # Shrinkage by shelf and item; still missing = what the truth says stayed lost.
    still = {(shelf.read_point, shelf.location, u.gtin): 0 for u in scenario.units}
    for unit in scenario.units:
        if unit.urn in truth.missing:
            still[(shelf.read_point, shelf.location, unit.gtin)] += 1
    assert {(r["read_point"], r["location"], r["gtin"]): r["still_missing"] for r in rows} == {
        key: still[key] for key in truth.shrinkage
    }
    assert {urn for urn, unit in units.items() if unit.get("status") == "missing"} == truth.missing
    # Each loss is a count adjustment of reason shrinkage out of the shelf, once.
    adjustments = [
        entry
        for unit in units.values()
        for entry in unit.get("history", [])
        if entry.get("reason") == "shrinkage"
    ]
    assert len(adjustments) == sum(truth.shrinkage.values())
    assert {(a["kind"], a["from_location"]) for a in adjustments} == {
        ("count_adjustment", shelf.location)
    }
    # unit_missing: open for the cases still lost, closed for the one found again.
    found_again = {a.subject for a in truth.alerts if a.kind == "unit_missing"} - truth.missing
    assert found_again, "the scenario must find a case again"
    by_subject = {a["subject"]: a for a in alerts if a["kind"] == "unit_missing"}
    assert {s for s, a in by_subject.items() if a["closed_at"] is None} == truth.missing
    assert {s for s, a in by_subject.items() if a["closed_at"] is not None} == found_again
    assert csv_text.splitlines()[0].startswith("read_point,location,sku,gtin")
    assert len(csv_text.splitlines()) == 1 + len(truth.shrinkage)
