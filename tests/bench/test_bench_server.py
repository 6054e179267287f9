"""Smoke tests of the server and broker benchmarks on a tiny size (real Mosquitto, real
server process); they check the figures come out positive, not how large they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import server
from bench.broker import Mosquitto, wait_listening
from wire.models import EventBatch

pytestmark = pytest.mark.broker


def test_batches_are_valid_event_batches() -> None:
    batches = server.build_batches(server.SHIP_LAG_BATCHES + 1, gateways=2)
    assert len(batches) == 2
    for mine in batches:
        parsed = [EventBatch.model_validate_json(batch.payload) for batch in mine]
        assert all(len(batch.events) == server.BATCH_EVENTS for batch in parsed)
        assert parsed[0].seq_first == 1
        assert parsed[1].seq_first == parsed[0].seq_last + 1
        assert mine[-1].shipments > 0
        shipped = {e.epc for e in parsed[-1].events if e.direction == "out"}
        received = {e.epc for batch in parsed[:-1] for e in batch.events if e.direction == "in"}
        assert shipped <= received


def test_server_and_broker_figures_are_positive(tmp_path: Path, mosquitto: Any) -> None:
    figure, payloads = server.server_events(mosquitto.url, tmp_path, 1, warmup_batches=1)
    assert figure.key == "server.events_per_s"
    assert figure.value > 0
    assert figure.detail["events"] == server.GATEWAYS * server.BATCH_EVENTS
    assert len(payloads) == server.GATEWAYS
    raw = server.broker_raw(mosquitto.host, mosquitto.port, payloads, tmp_path)
    assert raw.key == "broker.raw_msgs_per_s"
    assert raw.value > 0
    assert json.loads(payloads[0])["gateway"] == server.gateway_name(1)


def test_bench_broker_starts_and_stops(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    with broker:
        assert wait_listening(broker.port, 1.0)
    assert broker.pid is None
