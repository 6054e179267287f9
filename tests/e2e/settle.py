"""Waiting in end-to-end tests: for a condition to hold, for an edge agent to finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from edge.agent import EdgeAgent

WAIT_S = 60.0
"""How long a condition may take to come true, unless a test says otherwise."""


async def eventually(
    check: Callable[[], Awaitable[bool]],
    what: str,
    timeout_s: float = WAIT_S,
    interval_s: float = 0.1,
) -> None:
    """Until ``check()`` is true, asked every ``interval_s``; AssertionError (naming
    ``what``) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what} did not happen within {timeout_s:g} s")


async def settle(agent: EdgeAgent, timeout_s: float) -> None:
    """Until the agent holds no open pass and its outbox is empty (bounded in time)."""

    async def drained() -> bool:
        outbox = agent.outbox
        return outbox is not None and outbox.depth() == 0 and not any(map(len, agent.trackers))

    await eventually(drained, "the edge judging and delivering every pass", timeout_s)
