"""Writing the figures: ``bench/results.json`` (one key per figure) and ``BENCHMARKS.md``.

``results.json`` holds each figure's value under its key and a ``_meta`` key with the
machine, the run and, per figure, its unit, target, whether it was met, how it was
measured and its details. A run of some groups only (``--only``) keeps the other groups'
figures from the previous file, with the date they were measured.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from bench.figures import Figure, fmt

GROUP_PREFIXES: Final[Mapping[str, tuple[str, ...]]] = {
    # Before "server", whose "history." (history.follow_rows_per_s) would take these.
    "history": ("history.pages_", "history.reports_"),
    "edge": ("edge.",),
    "server": ("server.", "broker.", "sqlite.", "history.", "pg."),
    "api": ("api.",),
    "console": ("console.",),
    "replenishment": ("replenishment.",),
    "portal": ("portal.",),
    "fuzz": ("fuzz.",),
    "faults": ("faults.",),
}
"""Every group of ``bench.groups.GROUPS`` and the keys its figures have: a key of no group
would be dropped by the next run of any group, and ``--only`` clears profiles by prefix."""
ORDER: Final = (
    "edge.reads_per_s",
    "edge.sllurp_decode_per_s",
    "edge.reads_per_s_10k_tags",
    "edge.rss_mb_1m_buffered",
    "server.events_per_s",
    "broker.raw_msgs_per_s",
    "sqlite.raw_events_per_s",
    "history.follow_rows_per_s",
    "server.pg_events_per_s",
    "server.pg_2_instances_events_per_s",
    "pg.raw_events_per_s",
    "api.movements_p99_ms",
    "api.stock_p99_ms",
    "console.first_page_ms",
    "console.page_kb",
    "history.pages_p99_ms",
    "history.reports_p99_ms",
    "replenishment.fill_rate",
    "replenishment.avg_stock_ratio",
    "portal.tag_direction_accuracy",
    "portal.wrong_direction_rate",
    "portal.unresolved_rate",
    "fuzz.llrp_inputs",
    "fuzz.serial_inputs",
    "fuzz.crashes_and_hangs",
)


def group_of(key: str) -> str | None:
    for group, prefixes in GROUP_PREFIXES.items():
        if key.startswith(prefixes):
            return group
    return None


def figure_entry(figure: Figure, measured_at: str) -> dict[str, object]:
    return {
        "unit": figure.unit,
        "target": str(figure.target) if figure.target is not None else None,
        "met": figure.met,
        "how": figure.how,
        "measured_at": measured_at,
        "detail": dict(figure.detail),
    }


def load_previous(path: Path) -> dict[str, Any]:
    """The previous ``results.json``, or an empty one (missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def merge(
    previous: Mapping[str, Any],
    figures: Iterable[Figure],
    groups_run: Iterable[str],
    meta: Mapping[str, Any],
    group_meta: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """New results: this run's figures, plus the previous figures of groups not run now."""
    run = set(groups_run)
    old_meta = _mapping(previous.get("_meta"))
    old_figures = _mapping(old_meta.get("figures"))
    old_groups = _mapping(old_meta.get("groups"))
    values: dict[str, Any] = {}
    entries: dict[str, Any] = {}
    for key, value in previous.items():
        if key == "_meta" or group_of(key) in run or group_of(key) is None:
            continue
        values[key] = value
        if key in old_figures:
            entries[key] = old_figures[key]
    for figure in figures:
        group = group_of(figure.key)
        measured_at = str(group_meta.get(group or "", {}).get("date", meta.get("date")))
        values[figure.key] = figure.value
        entries[figure.key] = figure_entry(figure, measured_at)
    groups = {name: info for name, info in old_groups.items() if name not in run}
    groups.update({name: dict(info) for name, info in group_meta.items()})
    ordered = {key: values[key] for key in sorted(values, key=_order)}
    ordered["_meta"] = {
        **meta,
        "groups": groups,
        "figures": {key: entries[key] for key in sorted(entries, key=_order)},
    }
    return ordered


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _order(key: str) -> tuple[int, str]:
    return (ORDER.index(key) if key in ORDER else len(ORDER), key)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(results: Mapping[str, Any]) -> str:
    """``BENCHMARKS.md`` from a merged results mapping."""
    meta = results.get("_meta", {})
    machine = meta.get("machine", {})
    figures = meta.get("figures", {})
    groups = meta.get("groups", {})
    lines = ["# Benchmarks", ""]
    if meta.get("quick"):
        lines += [
            "> **Quick run** (`--quick`): tiny sizes to check that the benchmarks work. These "
            "are not the figures; run `make bench` for them.",
            "",
        ]
    lines += [
        "Written by `make bench` (`.venv/bin/python -m bench`); every value below was measured "
        "by that run on the machine described under it, never typed in. `bench/results.json` "
        "holds the same figures (one key each) with their details.",
        "",
        "| Figure | Value | Target | Met | How measured |",
        "|---|---|---|---|---|",
    ]
    for key, value in results.items():
        if key == "_meta":
            continue
        entry = figures.get(key, {})
        unit = entry.get("unit", "")
        target = entry.get("target") or "—"
        met = entry.get("met")
        met_text = "—" if met is None else ("yes" if met else "**no**")
        how = entry.get("how", "")
        lines.append(
            f"| `{key}` | {fmt(float(value))} {unit} | {target} | {met_text} | {_cell(how)} |"
        )
    lines += ["", "## Machine", ""]
    lines += [
        f"- CPU: {machine.get('cpu_model')} ({machine.get('cores')} cores), "
        f"{machine.get('memory_gb')} GB RAM, {machine.get('os')}",
        f"- Python {machine.get('python')} ({machine.get('implementation')}), "
        f"SQLite {machine.get('sqlite')}, {machine.get('mosquitto')}",
        f"- Run started {meta.get('date')}; load average at start "
        f"{machine.get('load_average_at_start')}",
    ]
    if groups:
        lines += [
            "",
            "| Group | Measured at | Took | Load average before → after |",
            "|---|---|---|---|",
        ]
        for name, info in groups.items():
            lines.append(
                f"| {name} | {info.get('date')} | {info.get('seconds')} s | "
                f"{info.get('load_before')} → {info.get('load_after')} |"
            )
    lines += ["", "## Details", ""]
    for key in results:
        if key == "_meta":
            continue
        detail = figures.get(key, {}).get("detail", {})
        if not detail:
            continue
        lines.append(f"### `{key}`")
        lines.append("")
        lines += [f"- {name}: {_detail(value)}" for name, value in detail.items()]
        lines.append("")
    misses = [key for key in results if key != "_meta" and figures.get(key, {}).get("met") is False]
    if misses:
        lines += ["## Targets missed", ""]
        for key in misses:
            entry = figures[key]
            profile = entry.get("detail", {}).get("profile")
            where = f"; profile: `{profile}`" if profile else ""
            lines.append(
                f"- `{key}` = {fmt(float(results[key]))} {entry.get('unit')}, target "
                f"{entry.get('target')}{where}"
            )
        lines.append("")
    took = sum(float(info.get("seconds") or 0) for info in groups.values()) / 60
    lines += [
        "## Reproduce",
        "",
        "```",
        f"make bench                                  # everything (these runs: {took:.0f} min)",
        ".venv/bin/python -m bench --only edge       # one group (see --help)",
        ".venv/bin/python -m bench --ledger-rows 1000000 --only api",
        ".venv/bin/python -m bench --quick           # tiny sizes, checks the benchmarks run",
        "```",
        "",
    ]
    return "\n".join(lines)


def _detail(value: object) -> str:
    if isinstance(value, float):
        return fmt(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return str(value)


def write(results: Mapping[str, Any], json_path: Path, markdown_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    markdown_path.write_text(markdown(results), encoding="utf-8")
