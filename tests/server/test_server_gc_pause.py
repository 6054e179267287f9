"""Reports pause the cyclic garbage collector while they run (``server.reports.gc_pause``):
overlapping reports pause it once and it runs again when the last one ends; a collector
paused by someone else is left as it was."""

from __future__ import annotations

import asyncio
import gc

from server.reports.gc_pause import collector_paused, without_collector


async def test_overlapping_reports_pause_the_collector_until_the_last_one_ends() -> None:
    assert gc.isenabled()
    first_in = asyncio.Event()
    release_first = asyncio.Event()
    seen: list[bool] = []

    @without_collector
    async def report(wait: asyncio.Event | None, entered: asyncio.Event | None) -> str:
        if entered is not None:
            entered.set()
        seen.append(gc.isenabled())
        if wait is not None:
            await wait.wait()
        seen.append(gc.isenabled())
        return "done"

    first = asyncio.create_task(report(release_first, first_in))
    await first_in.wait()
    assert await report(None, None) == "done"  # begins and ends inside the first one
    assert not gc.isenabled()
    release_first.set()
    assert await first == "done"
    assert seen == [False, False, False, False]
    assert gc.isenabled()


def test_a_collector_paused_by_someone_else_stays_paused() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
