"""The benchmark groups: what each one runs and how its figures are put together, and the
loop that runs those asked for under one Mosquitto.

A group (``GROUPS``, ``--only``) is one function of ``RUNNERS`` taking the run's
``Context`` and returning its figures; ``bench.report`` knows which keys belong to which
group. A figure that misses its target is followed by an untimed profiling pass whose
report goes to ``bench/profiles/`` (when the run has a profiles directory).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
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
    pg_floor,
    pg_waits,
    portal,
    replenishment,
    report,
    server,
    server_stages,
    server_workload,
    sqlite_floor,
)
from bench.broker import Mosquitto
from bench.figures import Figure, Target
from bench.sizes import Sizes

REPO: Final = Path(__file__).resolve().parent.parent
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
PROFILE_EDGE_READS: Final = 100_000
PROFILE_BATCHES_PER_GATEWAY: Final = 5
FLOOR_SHARE: Final = 0.7
"""server.events_per_s and server.pg_events_per_s should reach this share of their database's
floor of the same run (sqlite.raw_events_per_s, pg.raw_events_per_s): issue 18."""


@dataclass(frozen=True, slots=True)
class Context:
    """What every group gets: the run's sizes, its scratch directory, the broker they share,
    where profiles go (None: no profiling pass) and the PostgreSQL the server group uses."""

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


STAGES_ALONE_HOW: Final = (
    "The same batches through one Ingestor in the benchmark's process, on a fresh SQLite "
    "file, 8 at a time, each stage timed on its own with nothing overlapping "
    "(bench.server_stages): microseconds an event per stage in the details "
    "(stage_us_per_event_alone), and the rate the stages give one after the other."
)


def _in_turns(passes: int, *measures: Callable[[], Figure]) -> list[Figure]:
    """Each of ``measures`` taken ``passes`` times in turns (A B A B ...), and of each the
    pass with the median value, every pass's value in its details (``passes``).

    The machine is shared: one figure of identical code moved by a quarter from one pass
    to the next, and a floor measured once, a minute from the figure it divides, moved the
    share of it as much. Medians of passes taken in turns keep one slow minute from
    deciding either.
    """
    taken: list[list[Figure]] = [[] for _ in measures]
    for _ in range(passes):
        for figures, measure in zip(taken, measures, strict=True):
            figures.append(measure())
    medians = []
    for figures in taken:
        middle = sorted(figures, key=lambda figure: figure.value)[(len(figures) - 1) // 2]
        if len(figures) > 1:
            middle = dataclasses.replace(
                middle,
                how=f"{middle.how} The median of {len(figures)} passes, taken in turns with "
                "the figure it is compared with (every pass in the details: passes).",
                detail={**middle.detail, "passes": [figure.value for figure in figures]},
            )
        medians.append(middle)
    return medians


def run_server(ctx: Context) -> list[Figure]:
    payloads: list[bytes] = []

    def server_pass() -> Figure:
        figure, payloads[:] = server.server_events(
            ctx.broker.url, ctx.workdir, ctx.sizes.batches_per_gateway
        )
        return figure

    def floor_pass() -> Figure:
        return sqlite_floor.raw_events(
            ctx.workdir,
            ctx.sizes.batches_per_gateway,
            warmup_batches=server_workload.WARMUP_BATCHES,
        )

    figure, floor = _in_turns(ctx.sizes.ingest_passes, server_pass, floor_pass)
    # The same payloads, repeated until there are enough to time the broker alone.
    rounds = max(1, -(-ctx.sizes.raw_messages // len(payloads)))
    raw = broker_ceiling.broker_raw(
        ctx.broker.host, ctx.broker.port, payloads, ctx.workdir, rounds=rounds
    )
    ceiling = raw.value * server_workload.BATCH_EVENTS
    alone = server_stages.stage_costs(
        ctx.workdir, ctx.sizes.batches_per_gateway, server_workload.WARMUP_BATCHES
    )
    figure = dataclasses.replace(
        figure,
        target=Target(">=", round(FLOOR_SHARE * floor.value, 1)),
        how=f"{figure.how} {STAGES_ALONE_HOW}",
        detail={
            **figure.detail,
            "share_of_broker_ceiling": round(figure.value / ceiling, 4),
            "share_of_sqlite_floor": round(figure.value / floor.value, 4),
            "stage_us_per_event_alone": alone,
            "stages_one_after_another_events_per_s": round(1e6 / sum(alone.values()), 1),
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
    following = history.follow_rate(
        ctx.workdir / server.DATABASE_NAME,
        ctx.workdir,
        figure.value,
        passes=ctx.sizes.ingest_passes,
    )
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
    one, floor = _in_turns(
        ctx.sizes.ingest_passes,
        lambda: _on_pg(ctx, 1),
        lambda: pg_floor.raw_events(
            ctx.pg_admin_dsn,
            ctx.sizes.batches_per_gateway,
            warmup_batches=server_workload.WARMUP_BATCHES,
        ),
    )
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


def _clear_profiles(profiles: Path, group: str) -> None:
    """Remove a group's old profiles: a figure that now meets its target has none."""
    for prefix in report.GROUP_PREFIXES[group]:
        for old in profiles.glob(f"{prefix}*.txt"):
            old.unlink()


def _load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def run_groups(
    only: Sequence[str],
    sizes: Sizes,
    workdir: Path,
    profiles: Path | None,
    pg_admin_dsn: str,
) -> tuple[list[Figure], dict[str, dict[str, object]]]:
    """Run the groups in ``only`` (in ``GROUPS`` order) with one Mosquitto for them all.

    Returns:
        Their figures, and per group when it ran, how long it took and the machine's load
        before and after.
    """
    figures: list[Figure] = []
    group_meta: dict[str, dict[str, object]] = {}
    with Mosquitto(workdir) as broker:
        ctx = Context(sizes, workdir, broker, profiles, pg_admin_dsn)
        for group in GROUPS:
            if group not in only:
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
    return figures, group_meta
