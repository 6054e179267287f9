"""Smoke tests of the ledger generator and the API benchmark on a tiny ledger."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bench import api, history, ledger_gen
from bench.api_explain import explain
from bench.api_requests import MOVEMENT_KINDS, STOCK_KINDS
from server.config.settings import DatabaseSettings
from server.store.check import check_ledger
from server.store.database import Store
from wire.identifiers import gtin_of


async def _problems(path: Path) -> list[str]:
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    try:
        return await check_ledger(store)
    finally:
        await store.close()


def test_generated_ledger_is_consistent(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    generated = ledger_gen.generate(path, 3_001)
    assert generated.ledger_rows == 3_001
    assert asyncio.run(_problems(path)) == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 3_001
        assert conn.execute("SELECT COUNT(*) FROM units").fetchone()[0] == generated.units
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # Every index the migrations made is there again after the bulk load.
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"ix_ledger_time", "ix_ledger_epc", "ix_ledger_item"} <= indexes
        in_stock = conn.execute("SELECT SUM(on_hand) FROM balances").fetchone()[0]
        held = conn.execute("SELECT COUNT(*) FROM units WHERE status = 'in_stock'").fetchone()[0]
        assert in_stock == held > 0


def test_generated_epcs_carry_their_items_gtin() -> None:
    for unit in (0, 1, 4_999, 123_456):
        item = ledger_gen.unit_item(unit)
        assert gtin_of(ledger_gen.unit_epc(item, unit)) == ledger_gen.item_gtin(item)


def test_generate_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "taken.db"
    path.write_bytes(b"")
    with pytest.raises(FileExistsError):
        ledger_gen.generate(path, 10)


@pytest.mark.broker
def test_api_figures_are_positive(tmp_path: Path, mosquitto: Any) -> None:
    figures = api.latency(mosquitto.url, tmp_path, 3_000, 2, warmup_per_kind=0)
    assert [figure.key for figure in figures] == [
        "api.movements_p99_ms",
        "api.stock_p99_ms",
    ]
    assert all(figure.value > 0 for figure in figures)
    assert figures[0].detail["ledger_rows"] == 3_000
    assert not (tmp_path / "api-ledger.db").exists()


@pytest.mark.broker
def test_history_figures_are_positive(tmp_path: Path, mosquitto: Any) -> None:
    figures = history.latency(mosquitto.url, tmp_path, 3_000, 2, warmup_per_kind=0)
    assert [figure.key for figure in figures] == [
        "history.pages_p99_ms",
        "history.reports_p99_ms",
    ]
    assert all(figure.value > 0 for figure in figures)
    detail = figures[0].detail
    assert detail["ledger_rows"] == 3_000
    # A tiny ledger has about one row per item and place: no fewer rows without the item.
    assert 0 < detail["rollup_rows_without_item"] <= detail["rollup_rows_by_item"]
    baseline = detail["rollup_without_item_vs_by_item"]
    assert set(baseline) == {"dock_hours", "site_location_hours", "sites_days"}
    assert all(figures["by_item_p50_ms"] > 0 for figures in baseline.values())
    assert not (tmp_path / "history-ledger.db").exists()


def test_explain_writes_query_times_and_plans(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    generated = ledger_gen.generate(path, 3_000)
    out = explain(path, generated, tmp_path / "api.txt", samples=2)
    text = out.read_text(encoding="utf-8")
    assert text.count("## /api/v1/") == len(MOVEMENT_KINDS) + len(STOCK_KINDS) - 1
    assert "-- plan: " in text
    assert "FROM ledger" in text
