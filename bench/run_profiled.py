"""Run the ``stockgate`` command line under cProfile and save the statistics on exit.

``python -m bench.run_profiled --out FILE -- server --config server.toml`` is
``stockgate server --config server.toml`` with a profiler; stopping it with SIGTERM (or
Ctrl-C) ends the command cleanly and writes ``FILE`` (``pstats`` format).
"""

from __future__ import annotations

import cProfile
import sys
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--out":
        raise SystemExit("usage: python -m bench.run_profiled --out FILE [--] STOCKGATE-ARGS...")
    out = Path(args[1])
    rest = args[2:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    from stockgate.cli import main as stockgate_main

    sys.argv = ["stockgate", *rest]
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        stockgate_main()
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
