"""The server's database fills mid-ingest: nothing acked that is not committed, the state
reported (``/healthz`` 503, ``stockgate_database_full``, one error line), and once there is
room again the gateways' re-sends apply exactly once.

The database file is capped with SQLite's ``max_page_count`` a few dozen pages above its
size: SQLite then refuses the write with its real ``SQLITE_FULL`` ("database or disk is
full"), the error a full disk gives, at whatever statement needs the next page. Freeing
space is lifting the cap. ``python -m bench --only faults`` (``server_disk_full``) runs the
same with a real server process and its database on a small filesystem that really fills.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from server.api.factory import create_app
from server.ingest.consumer import Ingestor, IngestResult
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema.core import balances, ledger
from tests.server.server_helpers import Batches, RecordingPublisher, make_settings, sgtin

BATCH = 50
MAX_BATCHES = 60
HEADROOM_PAGES = 40
"""Pages the capped file may still grow by: a few batches' worth, so it fills mid-stream."""
AFTER_FULL = 3
"""Batches sent after the first refused one (the gateway keeps sending)."""


class PageCap:
    """``PRAGMA max_page_count`` on every new connection of a store while ``pages`` is set."""

    def __init__(self, store: Store) -> None:
        self.pages: int | None = None
        # The writes' connections (on SQLite, in a child process) and the reads'.
        for engine in {store.engine, store.write_engine}:
            event.listen(engine.sync_engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        if self.pages is not None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA max_page_count={self.pages}")
            finally:
                cursor.close()


async def _page_count(store: Store) -> int:
    async with store.read("counting pages") as conn:
        return int((await conn.execute(sa.text("PRAGMA page_count"))).scalar_one())


def _acked_batch_ids(publisher: RecordingPublisher, batches: Batches) -> set[str]:
    return {
        batch["batch_id"] for ack in publisher.on(batches.ack_topic) for batch in ack["batches"]
    }


async def _health(store: Store, metrics: Metrics, settings: Any) -> tuple[int, dict[str, Any], str]:
    app = create_app(store, settings, metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        health = await c.get("/healthz")
        scraped = await c.get("/metrics")
    return health.status_code, health.json(), scraped.text


async def test_a_full_database_acks_nothing_reports_it_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'server.db'}")
    store = Store.open(settings.database)
    await store.migrate()
    publisher = RecordingPublisher()
    metrics = Metrics()
    ingestor = Ingestor(store, settings, publisher, metrics)
    batches = Batches()
    cap = PageCap(store)
    try:
        # The disk fills: the file may grow by HEADROOM_PAGES more pages from now on.
        cap.pages = await _page_count(store) + HEADROOM_PAGES
        await store.write_engine.dispose()
        await store.engine.dispose()

        payloads: list[tuple[str, bytes]] = []
        results: list[IngestResult] = []
        refused_at: int | None = None
        caplog.set_level(logging.WARNING, logger="server")
        for number in range(MAX_BATCHES):
            first = batches.seq + 1
            events = [batches.event(epc=sgtin(first + n)) for n in range(BATCH)]
            batch_id = f"gw1:{batches.epoch}:{first}-{batches.seq}"
            payload = batches.payload(events, batch_id=batch_id, seq_first=first)
            payloads.append((batch_id, payload))
            results.append(await ingestor.handle(batches.topic, payload))
            if refused_at is None and results[-1].outcome == "failed":
                refused_at = number
            if refused_at is not None and number == refused_at + AFTER_FULL:
                break
        assert refused_at is not None, "the capped file never filled"
        assert refused_at > 0, "the capped file filled mid-stream, not at once"
        full = results[refused_at:]
        assert [r.outcome for r in full] == ["failed"] * (AFTER_FULL + 1)
        assert all("database full" in (r.reason or "") for r in full)
        assert [r.outcome for r in results[:refused_at]] == ["applied"] * refused_at

        # Nothing the database did not commit was acknowledged.
        acked = _acked_batch_ids(publisher, batches)
        assert acked == {batch_id for batch_id, _ in payloads[:refused_at]}
        assert store.full is not None
        assert "database or disk is full" in store.full.error

        status, health, scraped = await _health(store, metrics, settings)
        assert status == 503
        assert health["status"] == "degraded"
        assert health["database"] is True  # it answers reads; it takes no writes
        assert health["database_full_since"] is not None
        assert "full" in health["database_error"]
        assert "stockgate_database_full 1.0" in scraped
        # A small write that still fits (a sweep, a follower) does not end the state.
        async with store.begin("a write with nothing to write"):
            pass
        assert store.full is not None
        full_lines = [r for r in caplog.records if r.message.startswith("database full")]
        assert len(full_lines) == 1, "said once, not once per batch"
        assert full_lines[0].levelno == logging.ERROR

        # Space returns; the gateway re-sends every batch not acked, and one that was.
        cap.pages = None
        await store.write_engine.dispose()
        await store.engine.dispose()
        for batch_id, payload in [payloads[0], *payloads[refused_at:]]:
            again = await ingestor.handle(batches.topic, payload)
            assert again.outcome == ("duplicate" if batch_id == payloads[0][0] else "applied")
        assert _acked_batch_ids(publisher, batches) == {batch_id for batch_id, _ in payloads}

        events_sent = len(payloads) * BATCH
        async with store.read("checking the ledger") as conn:
            rows = (await conn.execute(sa.select(sa.func.count()).select_from(ledger))).scalar()
            distinct = (
                await conn.execute(sa.select(sa.func.count(sa.distinct(ledger.c.event_id))))
            ).scalar()
            on_hand = (await conn.execute(sa.select(sa.func.sum(balances.c.on_hand)))).scalar()
        assert (rows, distinct, on_hand) == (events_sent, events_sent, events_sent)

        assert store.full is None
        status, health, scraped = await _health(store, metrics, settings)
        assert (status, health["status"], health["database_full_since"]) == (200, "ok", None)
        assert "stockgate_database_full 0.0" in scraped
        assert any(r.message.startswith("database writable again") for r in caplog.records)
    finally:
        await store.close()
