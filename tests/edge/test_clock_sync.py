"""The edge asks the kernel whether NTP has set the clock before it stamps events."""

from __future__ import annotations

import sys

import pytest

from edge.clock_sync import clock_synchronised, wait_for_sync
from edge.config import EdgeSettings
from edge.health import IssueBoard
from edge.monitor import CLOCK_UNSYNCHRONISED, HealthMonitor


def test_the_kernel_answers_on_linux() -> None:
    state = clock_synchronised()
    if sys.platform.startswith("linux"):
        assert isinstance(state, bool)
    else:
        assert state is None


async def test_the_wait_is_bounded_and_says_what_it_found() -> None:
    # Whatever this machine's clock is: synchronised now means no wait and True; not
    # synchronised means False after the bound.
    expected = clock_synchronised() is not False
    assert await wait_for_sync(1.0) is expected


@pytest.mark.parametrize("synced", [True, False])
def test_an_unsynchronised_clock_is_a_critical_issue(synced: bool) -> None:
    board = IssueBoard()
    monitor = HealthMonitor(EdgeSettings(gateway={"id": "gw-1", "site": "wh1"}), board)
    monitor.evaluate_clock(False)
    monitor.evaluate_clock(synced)
    listed = [issue for issue in board.issues(0.0) if issue.kind == CLOCK_UNSYNCHRONISED]
    assert [issue.severity for issue in listed] == ([] if synced else ["critical"])
