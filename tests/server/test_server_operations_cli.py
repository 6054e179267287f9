"""``stockgate server check-ledger --config FILE`` as a separate process, over a database
holding every kind of ledger row (ingest receipts and shipments, API adjustments,
transfers and reversals)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from server_helpers import ADMIN_KEY, OPERATOR_KEY, Batches, RecordingPublisher, bearer, sgtin

from plumbing.settings import load
from server.api.factory import create_app
from server.config.history import HistorySettings
from server.config.settings import ServerSettings
from server.history.follow import LedgerFollower
from server.history.rollups import RollupSink
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema import core as schema
from server.store.schema.history import history_movements, history_stock_daily

STOCKGATE = Path(sys.executable).parent / "stockgate"
CLI_TIMEOUT_S = 60
CONFIG = """
[database]
url = "sqlite+aiosqlite:///{path}"
[api]
port = 0
[[api.keys]]
key = "{admin}"
role = "admin"
[[api.keys]]
key = "{operator}"
role = "operator"
name = "olga"
[[read_points]]
id = "wh1.dock.1"
inbound_location = "wh1.receiving"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(
        CONFIG.format(path=tmp_path / "ledger.db", admin=ADMIN_KEY, operator=OPERATOR_KEY)
    )
    return path


@pytest.fixture
async def filled_store(config: Path) -> AsyncIterator[Store]:
    settings = load(ServerSettings, config)
    store = Store.open(settings.database)
    try:
        await store.migrate()
        ingestor = Ingestor(store, settings, RecordingPublisher(), Metrics())
        batches = Batches()
        events = [batches.event(epc=sgtin(n)) for n in range(1, 5)]
        events.append(batches.event(epc=sgtin(4), direction="out"))
        await ingestor.handle(batches.topic, batches.payload(events))
        transport = httpx.ASGITransport(app=create_app(store, settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            admin, operator = bearer(ADMIN_KEY), bearer(OPERATOR_KEY)
            for location in ("wh1.a", "wh1.a.1", "wh2"):
                response = await http.post(
                    "/api/v1/locations", headers=admin, json={"id": location}
                )
                assert response.status_code == 201, response.text
            calls = [
                ("adjustments", {"reason": "damaged", "epc": sgtin(1)}),
                ("adjustments", {"reason": "found", "epc": sgtin(9), "location": "wh1.a.1"}),
                ("transfers", {"epc": sgtin(2), "to_location": "wh2"}),
                ("transfers", {"epc": sgtin(3), "to_location": "wh1.a.1"}),
            ]
            for path, body in calls:
                response = await http.post(f"/api/v1/{path}", headers=operator, json=body)
                assert response.status_code == 201, response.text
            last = response.json()["movements"][0]["id"]
            response = await http.post(
                "/api/v1/reversals", headers=operator, json={"movement_id": last, "note": "no"}
            )
            assert response.status_code == 201, response.text
        yield store
    finally:
        await store.close()


async def _cli(config: Path, command: str) -> tuple[int, str]:
    """Run ``stockgate server <command>``: its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        str(STOCKGATE),
        "server",
        command,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, output.decode()


async def test_check_ledger_exits_0_when_balances_agree_and_1_naming_what_was_tampered(
    config: Path, filled_store: Store
) -> None:
    code, output = await _cli(config, "check-ledger")
    assert (code, output.strip()) == (0, "balances agree with the ledger")

    async with filled_store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.balances)
            .where(schema.balances.c.location_id == "wh2")
            .values(on_hand=schema.balances.c.on_hand + 5)
        )
        reversal = await conn.scalar(
            sa.select(schema.ledger.c.id).where(schema.ledger.c.reverses.is_not(None))
        )
        assert reversal is not None
        # Bypassing the API and the database's own guard (migration 0010 makes ledger rows
        # append-only): a reversal that sends the unit somewhere else.
        await conn.exec_driver_sql("DROP TRIGGER ledger_append_only_update")
        await conn.execute(
            sa.update(schema.ledger)
            .where(schema.ledger.c.id == reversal)
            .values(to_location="wh1.a")
        )
    code, output = await _cli(config, "check-ledger")
    assert code == 1, output
    assert output.splitlines() == [
        "item 80614141123458 at wh1.a: balance 0, ledger says 1",
        "item 80614141123458 at wh1.receiving: balance 1, ledger says 0",
        "item 80614141123458 at wh2: balance 6, ledger says 1",
        f"movement {reversal} reverses movement {reversal - 1} but does not mirror it (same "
        "item, unit, kind and quantity with the locations swapped, and not a reversal)",
        "3 balance(s) disagree with the ledger",
        "1 reversal(s) do not mirror the row they reverse",
    ]


async def _rollups(store: Store) -> dict[str, list[tuple[object, ...]]]:
    async with store.engine.connect() as conn:
        return {
            table.name: sorted(tuple(row) for row in await conn.execute(sa.select(table)))
            for table in (history_movements, history_stock_daily)
        }


async def test_rebuild_history_in_sql_equals_the_follower_over_every_kind_of_row(
    config: Path, filled_store: Store
) -> None:
    """Ingest passes, adjustments, transfers across sites and a reversal: the follower's
    rollups (Python) and ``rebuild-history``'s (SQL) are the same rows, and
    ``check-history`` agrees with both."""
    follower = LedgerFollower(filled_store, RollupSink(), HistorySettings(batch_rows=3))
    while await follower.step():
        pass
    await follower.release()
    followed = await _rollups(filled_store)
    assert followed["history_movements"]
    assert followed["history_stock_daily"]
    assert await _cli(config, "check-history") == (
        0,
        f"history agrees with the ledger up to row {follower.rows_followed}\n",
    )
    code, output = await _cli(config, "rebuild-history")
    assert code == 0, output
    assert output.endswith(f"history rebuilt from the ledger up to row {follower.rows_followed}\n")
    assert await _rollups(filled_store) == followed
    code, output = await _cli(config, "check-history")
    assert code == 0, output
