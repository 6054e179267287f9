"""``python -m bench``: run the benchmarks, write ``BENCHMARKS.md`` and ``bench/results.json``.

Groups (``--only``): ``edge`` (edge.* figures), ``portal`` (direction accuracy over the
simulator's hard-doorway scenarios), ``server`` (server.events_per_s, with two
baselines measured in the same run: the broker ceiling broker.raw_msgs_per_s on the same
Mosquitto, and the database floor sqlite.raw_events_per_s on the same disk) and
``api`` (api.* over ``--ledger-rows`` ledger rows), ``console`` (console.first_page_ms and
console.page_kb: the Doors and Stock pages over the same generated ledger, with the API
requests returning the same data as the baseline of the same run), ``history`` (history
pages and reports over ``--ledger-rows`` rows: history.pages_p99_ms,
history.reports_p99_ms), ``replenishment`` (a backtest of the reorder-point method:
replenishment.fill_rate, replenishment.avg_stock_ratio) and ``fuzz`` (a million mutated
LLRP inputs and a million mutated scanner inputs through the edge's input path over the
machine's cores, ``bench.fuzz``; crashes, hangs, slowest input and memory growth in the
details) and ``faults`` (the fault matrix of ``bench.faults`` on real processes, each
scenario's events lost or doubled with its recovery time; its ``broker_down`` keeps the
broker away for ten minutes of wall-clock time, and ``server_disk_full`` mounts a small
tmpfs, which needs root). One Mosquitto is started for the run.
A figure that misses its target is followed by an untimed profiling pass whose report
goes to ``bench/profiles/`` (``--no-profile`` skips it).

``--quick`` runs tiny sizes to check that every benchmark works; its table is printed and
written only where ``--results``/``--markdown`` say, so it never replaces the real figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bench import machine, pg_floor, report
from bench.groups import GROUPS, run_groups
from bench.sizes import DEFAULT_LEDGER_ROWS, FULL, QUICK

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO: Final = BENCH_DIR.parent


def _groups(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in GROUPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--only takes a comma-separated list of {', '.join(GROUPS)}; got {text!r}"
        )
    return names


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from err
    if value < 3:
        raise argparse.ArgumentTypeError(f"must be at least 3, got {value}")
    return value


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--only",
        type=_groups,
        default=list(GROUPS),
        help=f"groups to run: {','.join(GROUPS)}",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument(
        "--ledger-rows",
        type=_positive,
        default=None,
        help=f"ledger rows for the api, console and history groups (default "
        f"{DEFAULT_LEDGER_ROWS:,}; quick: {QUICK.ledger_rows:,})",
    )
    parser.add_argument("--results", type=Path, default=None, help="results.json to write")
    parser.add_argument("--markdown", type=Path, default=None, help="BENCHMARKS.md to write")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="scratch directory (default: a new temp dir)"
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="no profiling pass after a missed target"
    )
    parser.add_argument(
        "--pg-admin-dsn",
        default=pg_floor.DEFAULT_ADMIN_DSN,
        help="a PostgreSQL database the server group connects to, to create and drop its own "
        f"(default {pg_floor.DEFAULT_ADMIN_DSN})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    sizes = QUICK if args.quick else FULL
    if args.ledger_rows is not None:
        sizes = dataclasses.replace(sizes, ledger_rows=args.ledger_rows)
    results_path = args.results or (None if args.quick else BENCH_DIR / "results.json")
    markdown_path = args.markdown or (None if args.quick else REPO / "BENCHMARKS.md")
    profiles = None if (args.no_profile or args.quick) else BENCH_DIR / "profiles"
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="stockgate-bench-")) if own_workdir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "quick": args.quick,
        "ledger_rows": sizes.ledger_rows
        if {"api", "console", "history"} & set(args.only)
        else None,
        "sizes": dataclasses.asdict(sizes),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    }
    started = time.monotonic()
    try:
        figures, group_meta = run_groups(args.only, sizes, workdir, profiles, args.pg_admin_dsn)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["seconds"] = round(time.monotonic() - started, 1)
    previous = report.load_previous(results_path) if results_path is not None else {}
    merged = report.merge(previous, figures, args.only, meta, group_meta)
    if results_path is not None and markdown_path is not None:
        report.write(merged, results_path, markdown_path)
        print(f"bench: wrote {results_path} and {markdown_path}", file=sys.stderr)
    else:
        if results_path is not None or markdown_path is not None:
            print("bench: give both --results and --markdown to write files", file=sys.stderr)
        print(report.markdown(merged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
