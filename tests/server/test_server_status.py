"""Gateway status: last status per gateway, offline alerts, bad statuses dead-lettered."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from server_helpers import BASE_TIME, Probe

from server.config.settings import ServerSettings
from server.ingest.gateway_status import StatusRecorder
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema import core as schema

TOPIC = "stockgate/v1/wh1/gw1/status"


def status(state: str, minutes: int, **extra: Any) -> bytes:
    body = {
        "gateway": "gw1",
        "site": "wh1",
        "state": state,
        "at": (BASE_TIME + timedelta(minutes=minutes)).isoformat(),
        **extra,
    }
    return json.dumps(body).encode()


@pytest.fixture
def recorder(store: Store, settings: ServerSettings, metrics: Metrics) -> StatusRecorder:
    return StatusRecorder(store, settings.ingest, metrics)


async def test_statuses_are_kept_and_offline_opens_then_online_closes_an_alert(
    recorder: StatusRecorder, probe: Probe
) -> None:
    online = await recorder.handle(TOPIC, status("online", 0, buffer_depth=3))
    offline = await recorder.handle(TOPIC, status("offline", 1))
    again = await recorder.handle(TOPIC, status("offline", 2))
    back = await recorder.handle(TOPIC, status("online", 3))

    assert [r.outcome for r in (online, offline, again, back)] == ["recorded"] * 4
    [gateway] = await probe.rows(schema.gateways)
    assert (gateway["id"], gateway["site"], gateway["state"]) == ("gw1", "wh1", "online")
    assert gateway["status_at"] == BASE_TIME + timedelta(minutes=3)
    [alert] = await probe.alerts()
    assert (alert["kind"], alert["subject"], alert["severity"]) == (
        "gateway_offline",
        "gw1",
        "critical",
    )
    assert alert["closed_at"] is not None
    assert [a.kind for a in offline.alerts] == ["gateway_offline"]
    assert again.alerts == ()  # still open: not raised twice


async def test_a_last_will_counts_although_its_time_is_older(
    recorder: StatusRecorder, probe: Probe
) -> None:
    # The will is set at connect (minute 0); the gateway reported online until minute 10.
    await recorder.handle(TOPIC, status("online", 10, buffer_depth=1))
    will = await recorder.handle(TOPIC, status("offline", 0))

    assert will.outcome == "recorded"
    [gateway] = await probe.rows(schema.gateways)
    assert gateway["state"] == "offline"
    assert [a["kind"] for a in await probe.alerts()] == ["gateway_offline"]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TOPIC, b"{", "payload is not JSON"),
        (TOPIC, b'{"gateway": "gw1"}', "not a valid gateway status"),
        ("stockgate/v1/wh1/gw2/status", status("online", 0), "gateway 'gw2'"),
        ("stockgate/v1/wh1/gw1/events", status("online", 0), "not a status topic"),
    ],
)
async def test_bad_statuses_are_dead_lettered(
    recorder: StatusRecorder, probe: Probe, topic: str, payload: bytes, reason: str
) -> None:
    result = await recorder.handle(topic, payload)
    assert result.outcome == "rejected"
    [letter] = await probe.dead_letters()
    assert reason in letter["reason"]
    assert await probe.rows(schema.gateways) == []


async def test_an_empty_retained_status_is_a_clear_not_an_error(
    recorder: StatusRecorder, probe: Probe
) -> None:
    result = await recorder.handle(TOPIC, b"")
    assert result.outcome == "cleared"
    assert await probe.dead_letters() == []
