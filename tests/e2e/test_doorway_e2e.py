"""Every hard doorway, end to end: simulated reader -> edge -> Mosquitto -> server -> API.

Each of the eight doorway scenarios (overlapping fields, multipath, a shielded pallet, a
forklift stopping in the door, one backing out, two pallets crossing a wide door, cross
traffic, timestamp jitter) is played in real time through a real LLRP connection, a real
broker and the server on SQLite. Then, as an operator would:

1. every movement the portal made must be right (a receipt only for a case that came in,
   a shipment only for one that went out);
2. every pass without a direction must be listed by ``GET /api/v1/unresolved-passes``;
3. resolving each by what really happened (``in``/``out``, or ``ignore`` for goods that
   never crossed), a whole pallet group at once where the group agrees, must bring the
   stock to exactly the ground truth, each unit moved once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from firmware_sim.scenario import DOORWAY_SCENARIOS, Scenario, bundled_scenario, load_scenario
from firmware_sim.scenario_doorways import TagPass
from firmware_sim.scenario_run import run_scenario
from stockgate.demo_api import fetch_stock
from tests.e2e.settle import settle
from tests.e2e.stack import running_stack

pytestmark = [pytest.mark.broker, pytest.mark.e2e, pytest.mark.timeout(300)]

SETTLE_TIMEOUT_S = 90.0
MATCH_SLACK_S = 1.0
"""How far an unresolved pass's time (its last read) may stray past its truth window."""


@dataclass
class Played:
    scenario: Scenario
    started_utc_us: int
    api: httpx.AsyncClient


@pytest.fixture(params=DOORWAY_SCENARIOS)
async def played(
    request: pytest.FixtureRequest, mosquitto: Any, tmp_path: Path
) -> AsyncIterator[Played]:
    scenario = load_scenario(bundled_scenario(request.param))
    assert len(scenario.all_doors) == 1
    async with (
        running_stack(scenario, mosquitto.url, tmp_path, ("operator",)) as stack,
        stack.api("operator") as api,
    ):
        run = await run_scenario(scenario, stack.door)
        await settle(stack.agent, SETTLE_TIMEOUT_S)
        yield Played(scenario, run.started_utc_us, api)


async def _pages(api: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        query = {"limit": "200", **params, **({"cursor": cursor} if cursor else {})}
        response = await api.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        rows.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError(f"{path} pages never ended")


def _truth_of(row: dict[str, Any], played: Played, truth: list[TagPass]) -> TagPass:
    """The tag pass an unresolved pass stands for: same tag, its last read in the window."""
    at_s = (datetime.fromisoformat(row["time"]).timestamp() * 1e6 - played.started_utc_us) / 1e6
    urn = row["epc"]
    found = [
        p
        for p in truth
        if p.urn == urn and p.start_s - MATCH_SLACK_S <= at_s <= p.end_s + MATCH_SLACK_S
    ]
    assert found, f"unresolved pass of {urn} at {at_s:.2f} s matches no pass of the truth"
    return found[0]


async def test_a_hard_doorway_ends_with_the_ground_truth(played: Played) -> None:
    scenario, api = played.scenario, played.api
    truth = scenario.ground_truth()
    tag_passes = scenario.tag_passes()

    # 1. What the portal decided alone is right, or left open: never wrong.
    movements = await _pages(api, "/api/v1/movements")
    receipts = Counter(row["epc"] for row in movements if row["kind"] == "receipt")
    shipments = Counter(row["epc"] for row in movements if row["kind"] == "shipment")
    assert set(receipts) <= truth.received, "a receipt of a case that did not come in"
    assert set(shipments) <= truth.shipped, "a shipment of a case that did not go out"

    # 2. Every pass without a direction is listed, with its evidence.
    open_passes = await _pages(api, "/api/v1/unresolved-passes")
    for row in open_passes:
        assert row["state"] == "open"
        assert row["read_point"] == scenario.read_point
        assert "reason" in row["evidence"]
    # 3. The operator resolves them by what really happened: whole groups where the
    # group's tags all did the same, the rest one by one.
    wanted = {row["id"]: _truth_of(row, played, tag_passes).expected for row in open_passes}
    by_group: dict[str, list[dict[str, Any]]] = {}
    for row in open_passes:
        if row["group"] is not None:
            by_group.setdefault(row["group"], []).append(row)
    done: set[int] = set()
    for group, rows in by_group.items():
        verdicts = {wanted[row["id"]] for row in rows}
        if len(rows) < 2 or len(verdicts) != 1:
            continue
        direction = verdicts.pop() or "ignore"
        response = await api.post(
            "/api/v1/unresolved-passes/resolve", json={"group": group, "direction": direction}
        )
        assert response.status_code == 200, response.text
        done.update(row["id"] for row in rows)
    for row in open_passes:
        if row["id"] in done:
            continue
        direction = wanted[row["id"]] or "ignore"
        response = await api.post(
            f"/api/v1/unresolved-passes/{row['id']}/resolve", json={"direction": direction}
        )
        assert response.status_code == 200, response.text

    assert await _pages(api, "/api/v1/unresolved-passes") == []
    assert await fetch_stock(api) == truth.stock
    movements = await _pages(api, "/api/v1/movements")
    receipts = Counter(row["epc"] for row in movements if row["kind"] == "receipt")
    shipments = Counter(row["epc"] for row in movements if row["kind"] == "shipment")
    # Each crossing moved its unit exactly once; nothing else moved.
    assert receipts == Counter(p.urn for p in tag_passes if p.expected == "in")
    assert shipments == Counter(p.urn for p in tag_passes if p.expected == "out")
