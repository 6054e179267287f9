"""The size of the ``edge`` package's modules, checked on the source tree.

No module over ``MAX_LINES`` lines (split along its responsibilities instead). Import cycles
are checked for every package in ``tests/stockgate/test_layering.py``.
"""

from __future__ import annotations

from pathlib import Path

EDGE = Path(__file__).resolve().parents[2] / "edge"
MAX_LINES = 500


def test_no_module_over_max_lines() -> None:
    long = {
        str(path.relative_to(EDGE)): lines
        for path in sorted(EDGE.rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
