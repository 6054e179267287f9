"""The report: results.json keys, merging a partial run, and the Markdown table."""

from __future__ import annotations

import argparse

import pytest

from bench import report
from bench.__main__ import parse
from bench.cpu import percentile
from bench.figures import Figure, Target
from bench.groups import GROUPS

META = {"date": "2026-01-01T00:00:00+00:00", "machine": {"cpu_model": "Test CPU", "cores": 2}}


def figure(key: str, value: float, target: Target | None = None) -> Figure:
    return Figure(key=key, value=value, unit="x/s", how="measured | somehow", target=target)


def test_merge_keeps_the_groups_not_run() -> None:
    first = report.merge(
        {},
        [figure("edge.reads_per_s", 30_000.0, Target(">=", 20_000)), figure("api.stock_p99_ms", 9)],
        ["edge", "api"],
        META,
        {"edge": {"date": "d1"}, "api": {"date": "d1"}},
    )
    second = report.merge(
        first,
        [figure("api.stock_p99_ms", 70.0, Target("<=", 50))],
        ["api"],
        {**META, "date": "later"},
        {"api": {"date": "d2"}},
    )
    assert second["edge.reads_per_s"] == 30_000.0
    assert second["api.stock_p99_ms"] == 70.0
    figures = second["_meta"]["figures"]
    assert figures["edge.reads_per_s"]["measured_at"] == "d1"
    assert figures["api.stock_p99_ms"]["met"] is False
    assert list(second)[-1] == "_meta"


def test_markdown_lists_every_figure_with_target_and_machine() -> None:
    results = report.merge(
        {},
        [figure("server.events_per_s", 2_000.0, Target(">=", 20_000))],
        ["server"],
        META,
        {"server": {"date": "d"}},
    )
    text = report.markdown(results)
    assert "| `server.events_per_s` | 2,000 x/s | ≥ 20,000 | **no** |" in text
    assert "measured \\| somehow" in text
    assert "Test CPU" in text
    assert "## Targets missed" in text


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 1001)]
    assert percentile(samples, 99) == 990.0
    assert percentile([5.0], 99) == 5.0


def test_target_compares_both_ways() -> None:
    assert Target(">=", 10).met(10)
    assert not Target("<=", 10).met(10.5)


def test_options_are_checked() -> None:
    assert parse(["--only", "edge,api"]).only == ["edge", "api"]
    assert parse(["--ledger-rows", "1_000_000"]).ledger_rows == 1_000_000
    with pytest.raises(SystemExit):
        parse(["--only", "gpu"])
    with pytest.raises(SystemExit):
        parse(["--ledger-rows", "many"])


def test_group_parser_names_the_choices() -> None:
    from bench.__main__ import _groups

    with pytest.raises(argparse.ArgumentTypeError, match="edge, portal, server, api"):
        _groups("edge,gpu")


def test_every_group_owns_its_keys() -> None:
    assert set(report.GROUP_PREFIXES) == set(GROUPS)
    for group in GROUPS:
        assert all(
            report.group_of(f"{prefix}x") == group for prefix in report.GROUP_PREFIXES[group]
        )


def test_fuzz_and_fault_figures_survive_a_run_of_another_group() -> None:
    first = report.merge(
        {},
        [
            figure("fuzz.llrp_inputs", 1_000_000),
            figure("faults.broker_down", 0, Target("<=", 0)),
        ],
        ["fuzz", "faults"],
        META,
        {"fuzz": {"date": "d1"}, "faults": {"date": "d1"}},
    )
    second = report.merge(
        first, [figure("edge.reads_per_s", 30_000.0)], ["edge"], META, {"edge": {"date": "d2"}}
    )
    assert second["fuzz.llrp_inputs"] == 1_000_000
    assert second["faults.broker_down"] == 0
    assert second["_meta"]["figures"]["faults.broker_down"]["measured_at"] == "d1"
    assert set(second["_meta"]["groups"]) == {"fuzz", "faults", "edge"}
