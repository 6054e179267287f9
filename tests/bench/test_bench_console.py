"""Smoke test of the console benchmark on a tiny ledger (the real server, a real broker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import console


@pytest.mark.broker
def test_console_figures_measure_both_pages_and_their_api_twins(
    tmp_path: Path, mosquitto: Any
) -> None:
    first_page, page_kb = console.first_page(mosquitto.url, tmp_path, 3_000, 2)

    assert (first_page.key, page_kb.key) == ("console.first_page_ms", "console.page_kb")
    assert first_page.value > 0
    detail = first_page.detail
    assert detail["ledger_rows"] == 3_000
    assert {name: page["loads"] for name, page in detail["by_page"].items()} == {
        "doors": 2,
        "stock": 2,
    }
    assert all(page["api_twin_p95_ms"] > 0 for page in detail["by_page"].values())
    # A load counts the HTML and the console's stylesheet and script.
    assets = sum(
        len(path.read_bytes())
        for path in (Path(console.__file__).parent.parent / "server/console/static").iterdir()
    )
    assert page_kb.value * 1024 > assets
    assert page_kb.value == max(page["max_kb"] for page in detail["by_page"].values())
    assert not (tmp_path / "console-ledger.db").exists()
