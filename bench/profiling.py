"""cProfile statistics as a short text report, for figures that miss their target.

Profiles are taken in a separate, untimed pass after the measurement, so the profiler never
touches a reported figure.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from pathlib import Path
from typing import Final

TOP_BY_OWN_TIME: Final = 30
TOP_BY_CUMULATIVE: Final = 40


def write_text(source: cProfile.Profile | Path, out: Path, title: str, note: str) -> Path:
    """Write the top entries of ``source`` (a profile or a pstats file) to ``out``."""
    buffer = io.StringIO()
    stats = (
        pstats.Stats(str(source), stream=buffer)
        if isinstance(source, Path)
        else pstats.Stats(source, stream=buffer)
    )
    stats.strip_dirs()
    buffer.write(f"# {title}\n\n{note}\n\n## By own time (tottime)\n")
    stats.sort_stats("tottime").print_stats(TOP_BY_OWN_TIME)
    buffer.write("\n## By cumulative time\n")
    stats.sort_stats("cumulative").print_stats(TOP_BY_CUMULATIVE)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(buffer.getvalue(), encoding="utf-8")
    return out
