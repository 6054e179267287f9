from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edge.agent import EdgeAgent
from firmware_sim.scenario import bundled_scenario, load_scenario
from firmware_sim.scenario_plan import ScenarioEvent
from firmware_sim.scenario_run import run_scenario
from stockgate.demo_api import fetch_stock
from stockgate.demo_settings import GATEWAY_ID, edge_settings
from tests.e2e.settle import eventually, settle
from tests.e2e.stack import running_stack

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

WAIT_S = 60.0
# New values the scenario's passes are indifferent to (a door's parking threshold, a filter
# that matches no tag of it), so the ground truth holds whatever moment the change lands in.
TUNING = {
    "portals": [{"read_point": "wh1.dock.1", "max_dwell_s": 45.0, "min_reads": 2}],
    "llrp": [{"name": "dock1", "filter": {"exclude": ["ffff"]}}],
}


async def test_a_config_change_reaches_the_running_edge_and_stock_stays_true(
    mosquitto: Any, tmp_path: Path
) -> None:
    scenario = load_scenario(bundled_scenario("small"))
    async with (
        running_stack(scenario, mosquitto.url, tmp_path, ("admin", "viewer")) as stack,
        stack.api("admin") as admin,
        stack.api("viewer") as viewer,
        asyncio.TaskGroup() as tasks,
    ):
        agent = stack.agent

        async def reported() -> bool:
            found = (await viewer.get("/api/v1/gateways")).json()["items"]
            return bool(found) and found[0]["state"] == "online"

        await eventually(reported, "the gateway's first status", WAIT_S)
        path = f"/api/v1/gateways/{GATEWAY_ID}/config"

        refused = await viewer.put(path, json={"settings": TUNING})
        assert refused.status_code == 403
        local_only = await admin.put(
            path, json={"settings": {"llrp": [{"name": "dock1", "host": "10.9.9.9"}]}}
        )
        assert local_only.status_code == 422
        assert "host only set in the gateway's file" in local_only.json()["detail"]

        first_pass = asyncio.Event()

        def progress(event: ScenarioEvent) -> None:
            first_pass.set()

        playing = tasks.create_task(run_scenario(scenario, stack.door, progress))
        await asyncio.wait_for(first_pass.wait(), WAIT_S)
        # Mid-scenario: pallets are in the field while the door is retuned.
        changed = await admin.put(path, json={"settings": TUNING})
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert body["latest"]["version"] == 1
        assert body["published"] is True

        async def applied() -> bool:
            return agent.remote.version == 1

        await eventually(applied, "the edge to apply version 1", WAIT_S)
        assert not playing.done(), "the change must land while the scenario plays"
        assert agent.settings.portals[0].max_dwell_s == 45.0
        assert agent.settings.llrp[0].filter.exclude == ["ffff"]
        assert agent.local.portals[0].max_dwell_s != 45.0

        await playing
        assert agent.outbox is not None
        await settle(agent, WAIT_S)
        assert await fetch_stock(admin) == scenario.ground_truth().stock

        async def running_one() -> bool:
            state = (await viewer.get(path)).json()
            return bool(state["running"] == 1)

        await eventually(running_one, "the status to report version 1", WAIT_S)

        # A tuning whose fields are fine but whose whole is not: both sides of
        # the door on antenna 1. The server cannot tell (it has not the gateway's
        # file); the gateway refuses it and keeps version 1.
        broken = {"portals": [{"read_point": "wh1.dock.1", "inside_antennas": [1]}]}
        sent = await admin.put(path, json={"settings": broken})
        assert sent.status_code == 200, sent.text
        assert sent.json()["latest"]["version"] == 2

        async def rejected() -> bool:
            state = (await viewer.get(path)).json()
            return state["rejected"] is not None and state["rejected"]["config_version"] == 2

        await eventually(rejected, "the gateway to report the refusal", WAIT_S)
        state = (await viewer.get(path)).json()
        assert state["running"] == 1
        assert "both sides" in state["rejected"]["reason"]
        assert agent.remote.version == 1
        assert agent.settings.portals[0].inside_antennas == [2]
        assert agent.settings.portals[0].max_dwell_s == 45.0

        (fleet,) = (await viewer.get("/api/v1/gateways")).json()["items"]
        assert fleet["config_version"] == 1
        assert fleet["config_latest"] == 2
        assert fleet["software_version"]
        assert fleet["outbox_depth"] == 0
        assert fleet["readers"][0]["name"] == "dock1"
        assert fleet["readers"][0]["antennas"] == [1, 2]

    # The last good configuration survives a restart of the gateway.
    again = EdgeAgent(edge_settings(scenario, mosquitto.url, tmp_path, stack.door.port))
    assert again.remote.version == 1
    assert again.settings.portals[0].max_dwell_s == 45.0
