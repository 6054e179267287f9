"""Portal accuracy: does the edge give every tag pass of the hard-doorway scenarios the
direction it really moved in (or none, when it did not cross)?

Each scenario of ``SCENARIOS`` (the simulator's doorway physics: overlapping fields,
multipath, shielded cases, a stop in the doorway, backing out, two pallets at once through
a wide door, cross traffic, timestamp jitter) is played offline with several reader
seeds (``firmware_sim.offline``: the simulator's own inventory rounds and report
windows). Each report is encoded as LLRP bytes by the simulator's encoder and goes through
the edge's own path: ``LlrpFramer`` → sllurp decode → ``tag_reads`` → ``ReadPoints`` (the
portals' pass tracking and pallet grouping, ticked every ``TICK_S`` on the reader clock) →
``to_event`` (the wire event the server receives). Every event is then matched to the
scenario's ground truth (``Scenario.tag_passes``) by EPC, door and time.

Outcome of one tag pass:

* ``moved_right``: it crossed and every event of it carries that direction;
* ``moved_wrong``: an event of it carries the opposite direction, or any direction when
  it did not cross (staged, cross traffic, backed out);
* ``unresolved``: it crossed, and its events carry no direction (the server lists it as an
  unresolved pass for an operator);
* ``ignored_right``: it did not cross and no event of it carries a direction;
* ``dropped``: it crossed and the edge made no event of it at all (must be 0).

``tag passes = moved_right + moved_wrong + unresolved + ignored_right + dropped``;
accuracy is ``(moved_right + ignored_right) / tag passes``.
"""

from __future__ import annotations

import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from bench.figures import Figure, Target
from edge.config import EdgeSettings
from edge.intake import TICK_S
from edge.readers.llrp_codec import LlrpFramer, decode
from edge.readers.llrp_reports import tag_reads
from edge.readpoints import ReadPoints
from firmware_sim.llrp_types import ContentSelector
from firmware_sim.offline import play
from firmware_sim.report_encoder import ReportEncoder
from firmware_sim.scenario import DOORWAY_SCENARIOS, Scenario, bundled_scenario
from firmware_sim.scenario_doorways import TagPass
from plumbing.settings import load
from wire.models import Event

SCENARIOS: Final = DOORWAY_SCENARIOS
SEEDS: Final = 6
"""Reader seeds per scenario (and layout seeds: the scenario's seed moves with it)."""
BASE_UTC_US: Final = 1_732_521_600_000_000
MATCH_MARGIN_US: Final = 500_000
"""Slack when matching an event's reads to a truth window (jitter, report windows)."""
ACCURACY_TARGET: Final = 0.995
WRONG_TARGET: Final = 0.0005
SELECTOR: Final = ContentSelector(
    antenna_id=True, peak_rssi=True, first_seen=True, last_seen=True, tag_seen_count=True
)
OUTCOMES: Final = ("moved_right", "moved_wrong", "unresolved", "ignored_right", "dropped")


def portal_settings(scenario: Scenario) -> EdgeSettings:
    """The edge config a site would write for the scenario's doors (defaults otherwise)."""
    doors = scenario.all_doors
    return load(
        EdgeSettings,
        None,
        gateway={"id": "gw-bench-portal", "site": scenario.site},
        buffer={"path": "unused.db"},
        llrp=[{"name": door.reader.name, "host": "127.0.0.1"} for door in doors],
        portals=[
            {
                "read_point": door.read_point,
                "reader": door.reader.name,
                "outside_antennas": list(door.reader.outside_antennas),
                "inside_antennas": list(door.reader.inside_antennas),
            }
            for door in doors
        ],
    )


def seeded(name: str, seed: int) -> Scenario:
    """Bundled scenario ``name`` with its seed moved by ``seed`` (new layouts, new reads)."""
    data = tomllib.loads(bundled_scenario(name).read_text(encoding="utf-8"))
    data["seed"] = int(data.get("seed", 1)) * 1000 + seed
    return Scenario.model_validate(data)


def edge_events(scenario: Scenario, seed: int | str | None = None) -> list[Event]:
    """Every event the edge makes of ``scenario``'s reads, through LLRP bytes."""
    settings = portal_settings(scenario)
    points = ReadPoints(settings)
    encoder = ReportEncoder(SELECTOR)
    framers = {door.reader.name: LlrpFramer() for door in scenario.all_doors}
    events: list[Event] = []
    next_tick = 0.0
    now = 0.0

    def store(finished: list[object]) -> None:
        for item in finished:
            to_event = getattr(item, "to_event", None)
            if to_event is not None:
                events.append(to_event(f"ev-{len(events)}"))

    for number, report in enumerate(play(scenario, seed=seed, base_utc_us=BASE_UTC_US), 1):
        now = report.at_s
        # The agent ticks on its own timer, also while no report comes.
        while next_tick <= now:
            store(list(points.tick(next_tick)))
            next_tick += TICK_S
        for frame in framers[report.reader].feed(encoder.encode(number, list(report.entries))):
            decoded = decode(frame)
            reads, _ = tag_reads(report.reader, decoded.body, BASE_UTC_US)
            for read in reads:
                points.read(report.reader, read, now)
    departure = max(portal.departure_timeout_s for portal in settings.portals)
    for step in range(1, 200):
        store(list(points.tick(now + step * TICK_S)))
        if step * TICK_S > departure * 3 and not any(map(len, points.trackers)):
            break
    store(list(points.drain()))
    return events


@dataclass(slots=True)
class Tally:
    """Outcomes of one scenario's tag passes."""

    outcomes: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    """A few wrong ones, for the details."""
    unmatched_with_direction: int = 0
    events: int = 0

    @property
    def passes(self) -> int:
        return sum(self.outcomes.values())

    def add(self, other: Tally) -> None:
        self.outcomes.update(other.outcomes)
        for kind, counts in other.by_kind.items():
            self.by_kind.setdefault(kind, Counter()).update(counts)
        self.wrong.extend(other.wrong[: max(0, 10 - len(self.wrong))])
        self.unmatched_with_direction += other.unmatched_with_direction
        self.events += other.events


def _window_us(tag_pass: TagPass) -> tuple[int, int]:
    return (
        BASE_UTC_US + round(tag_pass.start_s * 1_000_000) - MATCH_MARGIN_US,
        BASE_UTC_US + round(tag_pass.end_s * 1_000_000) + MATCH_MARGIN_US,
    )


def judge(scenario: Scenario, events: list[Event]) -> Tally:
    """Match events to the scenario's tag passes and count the outcomes."""
    truth = scenario.tag_passes()
    by_tag: dict[tuple[str, str], list[int]] = {}
    for index, tag_pass in enumerate(truth):
        by_tag.setdefault((tag_pass.urn, tag_pass.read_point), []).append(index)
    matched: dict[int, list[Event]] = {index: [] for index in range(len(truth))}
    tally = Tally(events=len(events))
    for event in events:
        reads = event.reads
        if reads is None or event.epc is None:
            continue
        first = _us(reads.first_seen)
        last = _us(reads.last_seen)
        home = None
        for index in by_tag.get((event.epc, event.read_point), ()):
            low, high = _window_us(truth[index])
            if first <= high and last >= low:
                home = index
                break
        if home is None:
            if event.direction is not None:
                tally.unmatched_with_direction += 1
            continue
        matched[home].append(event)
    for index, tag_pass in enumerate(truth):
        outcome = _outcome(tag_pass, matched[index])
        tally.outcomes[outcome] += 1
        tally.by_kind.setdefault(tag_pass.kind, Counter())[outcome] += 1
        if outcome == "moved_wrong" and len(tally.wrong) < 10:
            given = [e.direction for e in matched[index]]
            tally.wrong.append(f"{tag_pass.source} {tag_pass.urn}: {tag_pass.expected} -> {given}")
    return tally


def _us(value: object) -> int:
    from datetime import datetime

    assert isinstance(value, datetime)
    return round(value.timestamp() * 1_000_000)


def _outcome(tag_pass: TagPass, events: list[Event]) -> str:
    directions = {event.direction for event in events} - {None}
    if tag_pass.expected is None:
        return "moved_wrong" if directions else "ignored_right"
    if not events:
        return "dropped"
    if not directions:
        return "unresolved"
    return "moved_right" if directions == {tag_pass.expected} else "moved_wrong"


def run(seeds: int = SEEDS, scenarios: tuple[str, ...] = SCENARIOS) -> dict[str, Tally]:
    """Tally per scenario over ``seeds`` seeds each."""
    tallies: dict[str, Tally] = {}
    for name in scenarios:
        total = Tally()
        for seed in range(seeds):
            scenario = seeded(name, seed)
            total.add(judge(scenario, edge_events(scenario)))
        tallies[name] = total
    return tallies


def _rates(tally: Tally) -> dict[str, object]:
    n = tally.passes or 1
    o = tally.outcomes
    return {
        "tag_passes": tally.passes,
        **{name: o[name] for name in OUTCOMES},
        "accuracy": round((o["moved_right"] + o["ignored_right"]) / n, 5),
        "wrong_direction_rate": round(o["moved_wrong"] / n, 5),
        "unresolved_rate": round(o["unresolved"] / n, 5),
        "unmatched_events_with_direction": tally.unmatched_with_direction,
        "by_kind": {kind: dict(counts) for kind, counts in sorted(tally.by_kind.items())},
        **({"wrong_examples": tally.wrong} if tally.wrong else {}),
    }


def accuracy(seeds: int = SEEDS) -> list[Figure]:
    """``portal.tag_direction_accuracy``, ``portal.wrong_direction_rate`` and
    ``portal.unresolved_rate`` over every scenario."""
    started = time.perf_counter()
    tallies = run(seeds)
    total = Tally()
    for tally in tallies.values():
        total.add(tally)
    seconds = time.perf_counter() - started
    n = total.passes
    o = total.outcomes
    if (
        o["moved_right"] + o["moved_wrong"] + o["unresolved"] + o["ignored_right"] + o["dropped"]
        != n
    ):
        raise RuntimeError("outcomes do not add up to the tag passes")
    wrong = (o["moved_wrong"] + total.unmatched_with_direction) / n
    details = {
        "totals": _rates(total),
        "scenarios": {name: _rates(tally) for name, tally in tallies.items()},
        "seeds_per_scenario": seeds,
        "seconds": round(seconds, 1),
    }
    how = (
        f"{n:,} tag passes: the simulator's {len(SCENARIOS)} hard-doorway scenarios "
        f"({', '.join(SCENARIOS)}), {seeds} seed(s) each, played offline with the reader's "
        "own rounds and 200 ms report windows, encoded as RO_ACCESS_REPORTs and put through "
        "the edge's LlrpFramer, sllurp decode, tag_reads, ReadPoints (pass tracking and "
        "pallet grouping) and to_event; each event matched to the ground truth by EPC, door "
        f"and time. tag passes = moved ({o['moved_right'] + o['moved_wrong']:,}) + "
        f"unresolved ({o['unresolved']:,}) + correctly ignored ({o['ignored_right']:,}) + "
        f"dropped ({o['dropped']:,})."
    )
    return [
        Figure(
            key="portal.tag_direction_accuracy",
            value=round((o["moved_right"] + o["ignored_right"]) / n, 5),
            unit="share",
            how=how,
            target=Target(">=", ACCURACY_TARGET),
            detail=details,
        ),
        Figure(
            key="portal.wrong_direction_rate",
            value=round(wrong, 5),
            unit="share",
            how="Tag passes given the opposite direction, or a direction although they did "
            "not cross (staged, cross traffic, backed out), over the same passes.",
            target=Target("<=", WRONG_TARGET),
            detail={"moved_wrong": o["moved_wrong"], "unmatched": total.unmatched_with_direction},
        ),
        Figure(
            key="portal.unresolved_rate",
            value=round(o["unresolved"] / n, 5),
            unit="share",
            how="Tag passes that crossed and were published without a direction (listed by "
            "the server as unresolved passes), over the same passes.",
            detail={"unresolved": o["unresolved"], "dropped": o["dropped"]},
        ),
    ]
