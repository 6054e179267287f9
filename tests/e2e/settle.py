"""Waiting for an edge agent to finish: every pass judged, every event acknowledged."""

from __future__ import annotations

import asyncio
import time

from edge.agent import EdgeAgent


async def settle(agent: EdgeAgent, timeout_s: float) -> None:
    """Until the agent holds no open pass and its outbox is empty (bounded in time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outbox = agent.outbox
        if outbox is not None and outbox.depth() == 0 and not any(map(len, agent.trackers)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the edge did not judge and deliver every pass in time")
