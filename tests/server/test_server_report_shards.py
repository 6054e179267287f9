"""Whole-ledger reports split by item among the API's process and a worker process
(``server.reports.shards``) give what the API's process alone gives, on both databases;
a worker that died is replaced and its share computed by the API's process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.history.check import rebuild_history
from server.reports.shards import PARENT_CHECK_S, ReportPool
from server.store.database import Store
from tests.server.server_helpers import VIEWER_KEY, process_alive
from tests.server.test_server_book_checkpoints import _fill

STEP_DAYS = 1
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    *(
        ("stock-value", {"as_of": moment, "method": method, "group_by": group})
        for moment in ("2024-03-06T00:00:00Z", "2024-03-09T13:00:00Z", "2024-03-20T00:00:00Z")
        for method in ("moving_average", "fifo")
        for group in ("item", "location", "category")
    ),
    ("stock-value", {"as_of": "2024-03-09T13:00:00Z", "site": "wh2"}),
    ("stock-value", {"as_of": "2024-03-09T13:00:00Z", "sku": "SKU3"}),
    ("aging", {"as_of": "2024-03-09T13:00:00Z", "buckets": "1,2,4"}),
    *(
        (name, {"since": "2024-03-05T07:00:00Z", "until": "2024-03-12T19:00:00Z", **more})
        for name, more in (
            ("turnover", {"method": "fifo"}),
            ("turnover", {"site": "wh3"}),
            ("abc-xyz", {"per": "day"}),
            ("abc-xyz", {"site": "wh1", "method": "fifo"}),
            ("losses", {"group_by": "reason,site,sku"}),
            ("losses", {"group_by": "site"}),
        )
    ),
]


@pytest.fixture
async def filled(store: Store) -> Store:
    await _fill(store, 3)
    await rebuild_history(store)
    return store


@pytest.fixture
async def pool(settings: ServerSettings) -> AsyncIterator[ReportPool]:
    started = ReportPool(settings.database, 1)
    try:
        started.start()
        yield started
    finally:
        started.close()


async def _answers(
    store: Store, settings: ServerSettings, pool: ReportPool | None
) -> list[dict[str, Any]]:
    transport = httpx.ASGITransport(app=create_app(store, settings, report_pool=pool))
    headers = {"Authorization": f"Bearer {VIEWER_KEY}"}
    answers = []
    async with httpx.AsyncClient(
        transport=transport, base_url="http://stockgate.test", headers=headers
    ) as client:
        for name, params in REQUESTS:
            response = await client.get(f"/api/v1/reports/{name}", params=params)
            assert response.status_code == 200, (name, params, response.text)
            answers.append(response.json())
    return answers


async def test_reports_split_with_a_worker_process_equal_one_process(
    filled: Store, settings: ServerSettings, pool: ReportPool
) -> None:
    alone = await _answers(filled, settings, None)
    assert all(answer["items"] for answer in alone[:18])  # the data has stock to report
    assert await _answers(filled, settings, pool) == alone
    # Every request but the one naming an SKU had a share computed by the worker.
    assert pool.computed == len(REQUESTS) - 1


async def test_a_worker_that_died_is_replaced_and_its_share_computed_here(
    filled: Store, settings: ServerSettings, pool: ReportPool
) -> None:
    alone = await _answers(filled, settings, None)
    # The executor's own processes: the test kills them as the kernel would.
    for process in list(pool._executor._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
        process.join(10)
    assert await _answers(filled, settings, pool) == alone
    # The first request found the pool broken; the rest went to the new worker.
    assert pool.computed == len(REQUESTS) - 2


SERVER_WITH_A_POOL = """
import sys, time
from server.config.settings import DatabaseSettings
from server.reports.shards import ReportPool, _ready

pool = ReportPool(DatabaseSettings(url=sys.argv[1]), 1)
ready = pool._executor.submit(_ready)
if sys.argv[2] == "ready":
    assert ready.result(timeout=60)
print(" ".join(str(pid) for pid in pool._executor._processes), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("when", ["ready", "starting"])
def test_report_workers_end_when_their_server_is_killed(tmp_path: Path, when: str) -> None:
    """Killed once its worker is ready, or while the worker still imports the server."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'reports.db'}"
    with subprocess.Popen(
        [sys.executable, "-c", SERVER_WITH_A_POOL, url, when], stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            workers = [int(pid) for pid in server.stdout.readline().split()]
            assert len(workers) == 1
            if when == "ready":
                # While the server runs, its worker waits for shards.
                time.sleep(4 * PARENT_CHECK_S)
                assert all(process_alive(pid) for pid in workers)
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=10)
            deadline = time.monotonic() + 10 * PARENT_CHECK_S + 30
            while any(process_alive(pid) for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(process_alive(pid) for pid in workers)
        finally:
            if server.poll() is None:
                server.kill()
