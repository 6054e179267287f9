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
import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bench import (
    api,
    broker_ceiling,
    console,
    edge,
    edge_memory,
    fault_harness,
    faults,
    fuzz,
    history,
    llrp_stream,
    machine,
    pg_floor,
    pg_waits,
    portal,
    replenishment,
    report,
    server,
    server_workload,
    sqlite_floor,
)
from bench.broker import Mosquitto
from bench.figures import Figure, Target

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO: Final = BENCH_DIR.parent
GROUPS: Final = (
    "edge",
    "portal",
    "server",
    "api",
    "console",
    "history",
    "replenishment",
    "fuzz",
    "faults",
)
DEFAULT_LEDGER_ROWS: Final = 10_000_000


@dataclass(frozen=True, slots=True)
class Sizes:
    edge_reads: int
    edge_repeats: int
    edge_crowded_field: int
    edge_warmup_cycles: int
    buffered_events: int
    batches_per_gateway: int
    raw_messages: int
    ledger_rows: int
    api_samples: int
    replenishment_items: int
    fuzz_inputs: int
    portal_seeds: int
    fault_events: int


FULL: Final = Sizes(
    edge_reads=200_000,
    edge_repeats=5,
    edge_crowded_field=edge.CROWDED_FIELD,
    edge_warmup_cycles=llrp_stream.WARMUP_CYCLES,
    buffered_events=1_000_000,
    batches_per_gateway=25,
    raw_messages=1_000,
    ledger_rows=DEFAULT_LEDGER_ROWS,
    api_samples=100,
    replenishment_items=replenishment.ITEMS,
    fuzz_inputs=1_000_000,
    portal_seeds=portal.SEEDS,
    fault_events=2_000,
)
QUICK: Final = Sizes(
    edge_reads=3_000,
    edge_repeats=1,
    edge_crowded_field=1_000,
    edge_warmup_cycles=2,
    buffered_events=3_000,
    batches_per_gateway=1,
    raw_messages=8,
    ledger_rows=30_000,
    api_samples=5,
    replenishment_items=10,
    fuzz_inputs=2_000,
    portal_seeds=1,
    fault_events=200,
)
PROFILE_EDGE_READS: Final = 100_000
PROFILE_BATCHES_PER_GATEWAY: Final = 5
FLOOR_SHARE: Final = 0.7
"""server.events_per_s and server.pg_events_per_s should reach this share of their database's
floor of the same run (sqlite.raw_events_per_s, pg.raw_events_per_s): issue 18."""


@dataclass(frozen=True, slots=True)
class Context:
    sizes: Sizes
    workdir: Path
    broker: Mosquitto
    profiles: Path | None
    pg_admin_dsn: str


def _with_profile(figure: Figure, path: Path) -> Figure:
    return dataclasses.replace(figure, detail={**figure.detail, "profile": _shown(path)})


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def run_edge(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    figures = edge.throughput(
        sizes.edge_reads,
        sizes.edge_repeats,
        ctx.workdir,
        crowded_field=sizes.edge_crowded_field,
        warmup_cycles=sizes.edge_warmup_cycles,
    )
    if ctx.profiles is not None:
        for index, figure in enumerate(figures):
            if figure.met is False:
                field_tags = sizes.edge_crowded_field if figure.key.endswith("10k_tags") else 100
                out = ctx.profiles / f"{figure.key}.txt"
                edge.profile(PROFILE_EDGE_READS, field_tags, ctx.workdir, out)
                figures[index] = _with_profile(figure, out)
    figures.append(edge_memory.memory(sizes.buffered_events, ctx.workdir, ctx.broker.url))
    return figures


def run_portal(ctx: Context) -> list[Figure]:
    return portal.accuracy(ctx.sizes.portal_seeds)


def run_server(ctx: Context) -> list[Figure]:
    figure, payloads = server.server_events(
        ctx.broker.url, ctx.workdir, ctx.sizes.batches_per_gateway
    )
    # The same payloads, repeated until there are enough to time the broker alone.
    rounds = max(1, -(-ctx.sizes.raw_messages // len(payloads)))
    raw = broker_ceiling.broker_raw(
        ctx.broker.host, ctx.broker.port, payloads, ctx.workdir, rounds=rounds
    )
    ceiling = raw.value * server_workload.BATCH_EVENTS
    floor = sqlite_floor.raw_events(
        ctx.workdir,
        ctx.sizes.batches_per_gateway,
        warmup_batches=server_workload.WARMUP_BATCHES,
    )
    figure = dataclasses.replace(
        figure,
        target=Target(">=", round(FLOOR_SHARE * floor.value, 1)),
        detail={
            **figure.detail,
            "share_of_broker_ceiling": round(figure.value / ceiling, 4),
            "share_of_sqlite_floor": round(figure.value / floor.value, 4),
        },
    )
    if ctx.profiles is not None and figure.met is False:
        out = ctx.profiles / f"{figure.key}.txt"
        try:
            server.profile(ctx.broker.url, ctx.workdir, PROFILE_BATCHES_PER_GATEWAY, out)
        except server.ProfileError as err:
            # The figure stands without its profile; the other groups still run.
            print(f"bench: profiling pass failed: {err}", file=sys.stderr)
        else:
            figure = _with_profile(figure, out)
    following = history.follow_rate(ctx.workdir / server.DATABASE_NAME, ctx.workdir, figure.value)
    return [figure, raw, floor, following, *run_server_pg(ctx, figure)]


def _on_pg(ctx: Context, instances: int, sites: int = 1) -> Figure:
    """The server benchmark on a fresh PostgreSQL database, with its sessions' waits."""

    async def create() -> str:
        return await pg_floor.create_database(ctx.pg_admin_dsn, "stockgate_bench_pg_server")

    name = asyncio.run(create())
    dsn = pg_floor.dsn_of(ctx.pg_admin_dsn, name)
    # A broker of its own: the servers' sessions outlive them (clean_start=False), and on a
    # shared subscription the broker keeps handing the next run's batches to those gone.
    brokerdir = ctx.workdir / f"broker-{name}"
    brokerdir.mkdir()
    try:
        with Mosquitto(brokerdir) as broker:
            return server.pg_server_events(
                broker.url,
                ctx.workdir,
                ctx.sizes.batches_per_gateway,
                pg_floor.sqlalchemy_url(dsn),
                instances=instances,
                sites=sites,
                sample_waits=lambda: pg_waits.sampled_waits(dsn, name),
            )
    finally:
        asyncio.run(pg_floor.drop_database(ctx.pg_admin_dsn, name))


def run_server_pg(ctx: Context, sqlite_figure: Figure) -> list[Figure]:
    """The PostgreSQL figures: its floor, one server instance, two on a shared subscription."""
    floor = pg_floor.raw_events(
        ctx.pg_admin_dsn,
        ctx.sizes.batches_per_gateway,
        warmup_batches=server_workload.WARMUP_BATCHES,
    )
    one = _on_pg(ctx, 1)
    one = dataclasses.replace(
        one,
        target=Target(">=", round(FLOOR_SHARE * floor.value, 1)),
        detail={
            **one.detail,
            "share_of_pg_floor": round(one.value / floor.value, 4),
            "ratio_to_sqlite_server": round(one.value / sqlite_figure.value, 4),
        },
    )
    two = _on_pg(ctx, 2)
    # The same two instances with the gateways on two sites: their waits for one another,
    # if any, are then not on a site's balance rows.
    apart = _on_pg(ctx, 2, sites=2)
    two = dataclasses.replace(
        two,
        detail={
            **two.detail,
            "ratio_to_one_instance": round(two.value / one.value, 4),
            "two_sites": {
                "events_per_s": apart.value,
                "server_cpu_cores": apart.detail["server_cpu_cores"],
                "waits": apart.detail["waits"],
            },
        },
    )
    return [one, two, floor]


def run_api(ctx: Context) -> list[Figure]:
    out = ctx.profiles / "api.queries.txt" if ctx.profiles is not None else None
    figures = api.latency(
        ctx.broker.url,
        ctx.workdir,
        ctx.sizes.ledger_rows,
        ctx.sizes.api_samples,
        explain_to=out,
    )
    return [
        _with_profile(figure, out)
        if out is not None and figure.detail.get("profile") is not None
        else figure
        for figure in figures
    ]


def run_console(ctx: Context) -> list[Figure]:
    return console.first_page(
        ctx.broker.url, ctx.workdir, ctx.sizes.ledger_rows, ctx.sizes.api_samples
    )


def run_history(ctx: Context) -> list[Figure]:
    return history.latency(
        ctx.broker.url, ctx.workdir, ctx.sizes.ledger_rows, ctx.sizes.api_samples
    )


def run_replenishment(ctx: Context) -> list[Figure]:
    return replenishment.backtest(ctx.sizes.replenishment_items)


FUZZ_DEADLINE_S: Final = 1200.0
"""Each fuzz process stops after this long even if its share is not done (the figure then
falls short of its target and says so)."""
FUZZ_SEED: Final = 13


def run_fuzz(ctx: Context) -> list[Figure]:
    figures = []
    processes = max(1, min(os.cpu_count() or 1, 4))
    wanted = ctx.sizes.fuzz_inputs
    failures = 0
    for kind, unit in (("llrp", "mutated LLRP inputs"), ("serial", "mutated scanner inputs")):
        result = fuzz.fuzz_parallel(
            kind, wanted, FUZZ_SEED, processes=processes, deadline_s=FUZZ_DEADLINE_S
        )
        failures += len(result.crashes) + len(result.hangs)
        figures.append(
            Figure(
                key=f"fuzz.{kind}_inputs",
                value=result.inputs,
                unit=unit,
                how=(
                    "Seeded mutations of valid inputs through the edge's framer, decoder and "
                    f"conversions in {processes} processes; every input must end in a handled "
                    f"error or a valid result within {fuzz.HANG_S:g} s."
                ),
                target=Target(">=", wanted),
                detail={
                    "crashes": len(result.crashes),
                    "hangs": len(result.hangs),
                    "first_crashes": (result.crashes + result.hangs)[:5],
                    "frames": result.frames,
                    "handled": result.handled,
                    "slowest_input_s": round(result.slowest_s, 4),
                    "rss_growth_bytes": result.rss_growth_bytes,
                    "peak_rss_mb": round(result.peak_rss_bytes / 2**20, 1),
                    "seconds": round(result.seconds, 1),
                    "inputs_per_s": round(result.inputs / result.seconds) if result.seconds else 0,
                    "processes": result.processes,
                    "seeds": f"{FUZZ_SEED * 1000}..{FUZZ_SEED * 1000 + processes - 1}",
                },
            )
        )
    figures.append(
        Figure(
            key="fuzz.crashes_and_hangs",
            value=failures,
            unit="inputs that crashed or hung",
            how="Over both kinds above: an exception the edge does not handle, or an input "
            f"still running after {fuzz.HANG_S:g} s.",
            target=Target("<=", 0),
        )
    )
    return figures


def run_faults(ctx: Context) -> list[Figure]:
    figures = []
    for scenario in faults.SCENARIOS:
        key = f"faults.{scenario}"
        try:
            result = asyncio.run(
                faults.run_scenario(
                    scenario, ctx.workdir / f"faults-{scenario}", ctx.sizes.fault_events
                )
            )
        except fault_harness.FaultError as err:
            # Not verified: every event counts against the figure, with the reason, and
            # the other scenarios (and groups) still run.
            print(f"bench: {key} did not run: {err}", file=sys.stderr, flush=True)
            figures.append(
                Figure(
                    key=key,
                    value=ctx.sizes.fault_events,
                    unit="events lost or doubled",
                    how=faults.HOW[scenario],
                    target=Target("<=", 0),
                    detail={"not_run": str(err)},
                )
            )
            continue
        figures.append(
            Figure(
                key=key,
                value=result.lost + result.doubled,
                unit="events lost or doubled",
                how=faults.HOW[scenario],
                target=Target("<=", 0),
                detail={
                    "events": result.events,
                    "applied": result.applied,
                    "ledger_rows": result.ledger_rows,
                    "on_hand": result.on_hand,
                    "lost": result.lost,
                    "doubled": result.doubled,
                    "recover_s": result.recover_s,
                    "resends": result.resends,
                    "batches": result.batches,
                    **result.detail,
                },
            )
        )
    return figures


RUNNERS: Final[dict[str, Callable[[Context], list[Figure]]]] = {
    "edge": run_edge,
    "portal": run_portal,
    "server": run_server,
    "api": run_api,
    "console": run_console,
    "history": run_history,
    "replenishment": run_replenishment,
    "fuzz": run_fuzz,
    "faults": run_faults,
}


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


def _clear_profiles(profiles: Path, group: str) -> None:
    """Remove a group's old profiles: a figure that now meets its target has none."""
    for prefix in report.GROUP_PREFIXES[group]:
        for old in profiles.glob(f"{prefix}*.txt"):
            old.unlink()


def _load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


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
    figures: list[Figure] = []
    group_meta: dict[str, dict[str, object]] = {}
    started = time.monotonic()
    try:
        with Mosquitto(workdir) as broker:
            ctx = Context(sizes, workdir, broker, profiles, args.pg_admin_dsn)
            for group in GROUPS:
                if group not in args.only:
                    continue
                print(f"bench: {group} ...", file=sys.stderr, flush=True)
                if profiles is not None:
                    _clear_profiles(profiles, group)
                began = time.monotonic()
                info: dict[str, object] = {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "load_before": _load(),
                }
                got = RUNNERS[group](ctx)
                info["seconds"] = round(time.monotonic() - began, 1)
                info["load_after"] = _load()
                group_meta[group] = info
                figures.extend(got)
                for figure in got:
                    print(
                        f"bench:   {figure.key} = {figure.value:,} {figure.unit}"
                        f" (target {figure.target or '-'}, met {figure.met})",
                        file=sys.stderr,
                        flush=True,
                    )
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
