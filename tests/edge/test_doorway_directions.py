"""The edge on the simulator's hard-doorway physics: every scenario's reads, as LLRP bytes,
through the edge's decoding, pass tracking and pallet grouping, against ground truth.

What must hold on every scenario: no tag pass gets a wrong direction (or a direction
although it did not cross), and no pass that crossed is dropped without an event.
"""

from __future__ import annotations

import pytest

from bench import portal


@pytest.mark.parametrize("name", portal.SCENARIOS)
def test_no_wrong_direction_and_nothing_dropped(name: str) -> None:
    scenario = portal.seeded(name, 0)
    events = portal.edge_events(scenario)
    tally = portal.judge(scenario, events)
    assert tally.passes == len(scenario.tag_passes())
    assert tally.outcomes["moved_wrong"] == 0, tally.wrong
    assert tally.unmatched_with_direction == 0
    assert tally.outcomes["dropped"] == 0
    crossed = sum(1 for p in scenario.tag_passes() if p.expected is not None)
    # Nearly every pass that crossed gets its direction; the rest are published without.
    assert tally.outcomes["moved_right"] + tally.outcomes["unresolved"] == crossed
    assert tally.outcomes["moved_right"] >= 0.95 * crossed
    unresolved = [e for e in events if e.direction is None and e.reads is not None]
    assert all(e.reads.reason for e in unresolved if e.reads is not None)


def test_groups_are_published_on_the_events() -> None:
    scenario = portal.seeded("shielded", 0)
    events = portal.edge_events(scenario)
    groups = {e.group for e in events}
    assert None not in groups
    # Three passes of 100 cases: three groups.
    assert len(groups) == 3
    decided = {e.reads.decided_by for e in events if e.reads is not None}
    assert decided == {"tag", "group"}
