"""``stockgate server`` tunes the garbage collector for ingest (``server.app.tune_gc``)."""

from __future__ import annotations

import subprocess
import sys

from server.app import GC_YOUNG_THRESHOLD


def test_tune_gc_freezes_the_startup_heap_and_collects_young_objects_less_often() -> None:
    # In a fresh interpreter: the collector's settings are process-wide.
    probe = (
        "import gc; from server.app import tune_gc; tune_gc(); "
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert out == [str(GC_YOUNG_THRESHOLD), "True"]
