"""The fault matrix on real processes: a server SIGKILLed mid-transaction, the broker
restarted without persistence, the broker away while the door keeps reading, the server's
PostgreSQL connections killed mid-batch, one of two instances on a shared subscription
SIGKILLed. Each ends with the ledger checked against the events the edge appended: none
lost, none applied twice, balances agreeing.

The same code (``bench.faults``) runs the whole matrix under ``python -m bench --only
faults`` at a larger size, with the broker away for ten minutes, the server's disk filled
for real (a tmpfs, which needs root) and a gateway clock 1 h ahead; RELIABILITY.md records
its figures. Here the scenarios run small, to keep the suite within its time; the full
disk and the clock have tests of their own (``tests/server/test_server_disk_full.py``,
``tests/server/test_server_trust_ingest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import run_scenario

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

EVENTS = 300
OUTAGE_S = 12.0
"""The broker outage here: longer than the edge's shipped re-send period (10 s)."""


@pytest.mark.parametrize(
    "scenario",
    ["server_kill9", "broker_restart", "broker_down", "pg_conn_killed", "shared_sub_kill9"],
)
async def test_a_fault_loses_nothing_and_doubles_nothing(scenario: str, tmp_path: Path) -> None:
    result = await run_scenario(scenario, tmp_path, EVENTS, outage_s=OUTAGE_S)
    assert (result.lost, result.doubled) == (0, 0), result
    assert result.applied == result.on_hand == EVENTS
    assert result.ledger_rows == EVENTS
    if scenario == "broker_down":
        # Two thirds were read while the broker was away; nothing was sent meanwhile.
        assert result.detail["read_during_outage"] == EVENTS - EVENTS // 3
        assert result.detail["batches_sent_during_outage"] == 0
