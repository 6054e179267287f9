"""``stockgate server`` tunes the garbage collector for ingest and reports
(``server.collector.tune_gc``), in the API's process and in each report worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.collector import GC_YOUNG_THRESHOLD


def _probe(setup: str) -> list[str]:
    # In a fresh interpreter: the collector's settings are process-wide.
    probe = f"import gc; {setup}; print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)"
    return subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()


def test_tune_gc_freezes_the_startup_heap_and_collects_young_objects_less_often() -> None:
    assert _probe("from server.collector import tune_gc; tune_gc()") == [
        str(GC_YOUNG_THRESHOLD),
        "True",
    ]


@pytest.mark.parametrize("tuned", [True, False])
def test_a_report_worker_tunes_its_collector_once_started(tmp_path: Path, tuned: bool) -> None:
    # What a worker process runs first (``ReportPool``'s initializer); the probe without
    # it shows the interpreter's own settings, which the assertion tells apart.
    url = f"sqlite+aiosqlite:///{tmp_path / 'reports.db'}"
    setup = (
        "import os; "
        "from server.config.settings import DatabaseSettings; "
        "from server.reports.shards import _open; "
        + (f"_open(DatabaseSettings(url={url!r}), os.getppid())" if tuned else "pass")
    )
    expected = [str(GC_YOUNG_THRESHOLD), "True"] if tuned else ["700", "False"]
    assert _probe(setup) == expected
