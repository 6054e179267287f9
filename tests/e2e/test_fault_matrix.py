"""The fault matrix on real processes: a server SIGKILLed mid-transaction, one of two
instances on a shared subscription SIGKILLed. Each ends with the ledger checked against
the events the edge appended: none lost, none applied twice, balances agreeing.

The same code (``bench.faults``) runs the whole matrix, with the broker restart and
outage, PostgreSQL connections killed mid-batch and a gateway clock 1 h ahead, under
``python -m bench --only faults``; RELIABILITY.md records its figures. Here the two
scenarios that test exactly-once across a crash run at a small size, to keep the suite
within its time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import run_scenario

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

EVENTS = 300


@pytest.mark.parametrize("scenario", ["server_kill9", "shared_sub_kill9"])
async def test_a_crash_loses_nothing_and_doubles_nothing(scenario: str, tmp_path: Path) -> None:
    result = await run_scenario(scenario, tmp_path, EVENTS)
    assert (result.lost, result.doubled) == (0, 0), result
    assert result.applied == result.on_hand == EVENTS
    assert result.ledger_rows == EVENTS
