"""What a gateway may send, probed from the attacker's side (issue 13, findings 2, 3, 4, 8).

Each test replays a probe that once worked and asserts it is now refused: dead-lettered
(and alerted), never applied, and the victim's real events still applied. Real ingest on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from server_helpers import (
    BASE_TIME,
    OPERATOR_KEY,
    Batches,
    Probe,
    RecordingPublisher,
    bearer,
    make_settings,
    sgtin,
)
from typer.testing import CliRunner

from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.dead_letter_replay import OFFLINE, replay_dead_letters
from server.ingest.gateway_status import StatusRecorder
from server.ingest.gateway_trust import GatewayTrust
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema import core as schema
from stockgate.cli import app as cli

REGISTRY = [
    {"id": "gw-a", "site": "wh1", "read_points": ["wh1.dock.1"]},
    {"id": "gw-b", "site": "wh1", "read_points": ["wh1.dock.2"]},
    {"id": "gw-c", "site": "wh2", "read_points": ["wh2.dock.1"]},
]


def registry_settings(database_url: str, **ingest: Any) -> ServerSettings:
    return make_settings(database_url, gateways=REGISTRY, ingest=ingest)


async def alerts_of(probe: Probe, kind: str) -> list[dict[str, Any]]:
    return [alert for alert in await probe.alerts() if alert["kind"] == kind]


async def test_a_gateway_cannot_take_another_gateways_event_ids(
    ingestor: Ingestor, probe: Probe, publisher: RecordingPublisher
) -> None:
    a, b = Batches(gateway="gw-a", epoch="aaaa0001"), Batches(gateway="gw-b", epoch="bbbb0001")
    b_real = b.event(epc=sgtin(1), read_point="wh1.dock.2")
    forged = dict(b_real, epc=sgtin(2), read_point="wh1.dock.1")
    forged_api = a.event(epc=sgtin(3), event_id="api:olga:req-42")

    attack = await ingestor.handle(a.topic, a.payload([forged, forged_api]))
    real = await ingestor.handle(b.topic, b.payload([b_real]))

    assert (attack.applied, attack.dead_letters) == (0, 2)
    assert (real.outcome, real.applied, real.duplicates) == ("applied", 1, 0)
    letters = await probe.dead_letters()
    assert {letter["kind"] for letter in letters} == {"gateway_refused"}
    assert all("is not of this batch" in letter["reason"] for letter in letters)
    [alert] = await alerts_of(probe, "gateway_refused")
    assert alert["subject"] == "gw-a"
    assert sgtin(1) in await probe.units()
    assert sgtin(2) not in await probe.units()


async def test_an_api_request_id_is_not_taken_by_a_gateway(
    store: Store, ingestor: Ingestor, settings: ServerSettings
) -> None:
    a = Batches(gateway="gw-a", epoch="aaaa0001")
    # The operator key's actor name is "olga": her request ids are api:olga:<request_id>.
    forged = a.event(gtin="80614141123458", event_id="api:olga:req-42")
    await ingestor.handle(a.topic, a.payload([forged]))
    transport = httpx.ASGITransport(app=create_app(store, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for location in ("wh1", "wh1.a"):
            await client.post(
                "/api/v1/locations",
                headers=bearer("admin-key-0123456789"),
                json={"id": location},
            )
        await client.post(
            "/api/v1/items", headers=bearer("admin-key-0123456789"), json={"sku": "B", "name": "B"}
        )
        answer = await client.post(
            "/api/v1/adjustments",
            headers=bearer(OPERATOR_KEY),
            json={
                "reason": "found",
                "sku": "B",
                "location": "wh1.a",
                "quantity": 1,
                "request_id": "req-42",
            },
        )
    assert answer.status_code == 201, answer.text
    assert answer.json()["event_id"] == "api:olga:req-42"


async def test_a_gateway_id_in_range_passes_and_out_of_range_does_not(
    ingestor: Ingestor, probe: Probe
) -> None:
    a = Batches(gateway="gw-a", epoch="aaaa0001")
    inside = a.event(epc=sgtin(1), event_id="gw-a:aaaa0001:5")
    outside = a.event(epc=sgtin(2), event_id="gw-a:aaaa0001:9")
    other_epoch = a.event(epc=sgtin(3), event_id="gw-a:ffff0001:5")
    result = await ingestor.handle(
        a.topic, a.payload([inside, outside, other_epoch], seq_first=4, seq_last=6)
    )
    assert (result.applied, result.dead_letters) == (1, 2)


async def test_a_sequence_number_in_other_digits_is_refused_alone(
    ingestor: Ingestor, probe: Probe
) -> None:
    # int() reads Arabic-Indic and full-width digits, str.isdigit() passes superscripts
    # (which int() refuses): only ASCII digits name a sequence number.
    a = Batches(gateway="gw-a", epoch="aaaa0001")
    real = a.event(epc=sgtin(1), event_id="gw-a:aaaa0001:5")
    odd = [
        a.event(epc=sgtin(2 + n), event_id=f"gw-a:aaaa0001:{seq}")
        for n, seq in enumerate(("\u00b2", "\u0665", "\uff15"))
    ]
    result = await ingestor.handle(a.topic, a.payload([real, *odd], seq_first=1, seq_last=6))
    assert (result.outcome, result.applied, result.dead_letters) == ("applied", 1, 3)
    letters = await probe.dead_letters()
    assert [letter["kind"] for letter in letters] == ["gateway_refused"] * 3
    assert all("is not of this batch" in letter["reason"] for letter in letters)
    assert set(await probe.units()) == {sgtin(1)}


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return registry_settings(database_url)


async def test_the_registry_refuses_unknown_gateways_and_foreign_read_points(
    ingestor: Ingestor, probe: Probe, publisher: RecordingPublisher
) -> None:
    stranger = Batches(gateway="gw-x", epoch="eeee0001")
    a = Batches(gateway="gw-a", epoch="aaaa0001")
    a_at_wh2 = Batches(site="wh2", gateway="gw-a", epoch="aaaa0001")

    unknown = await ingestor.handle(
        stranger.topic, stranger.payload([stranger.event(epc=sgtin(1))])
    )
    other_site = await ingestor.handle(
        a_at_wh2.topic, a_at_wh2.payload([a_at_wh2.event(epc=sgtin(2), read_point="wh2.dock.1")])
    )
    foreign_point = a.event(epc=sgtin(3), read_point="wh1.dock.2")  # gw-b's door
    own_point = a.event(epc=sgtin(4), read_point="wh1.dock.1")
    mixed = await ingestor.handle(a.topic, a.payload([foreign_point, own_point]))

    assert (unknown.outcome, unknown.acked) == ("rejected", False)
    assert (other_site.outcome, other_site.acked) == ("rejected", False)
    assert (mixed.outcome, mixed.applied, mixed.dead_letters) == ("applied", 1, 1)
    assert set(await probe.units()) == {sgtin(4)}
    kinds = sorted(letter["kind"] for letter in await probe.dead_letters())
    assert kinds == ["gateway_refused", "gateway_refused", "unknown_gateway"]
    [unknown_alert] = await alerts_of(probe, "unknown_gateway")
    assert unknown_alert["subject"] == "gw-x"
    refused = await alerts_of(probe, "gateway_refused")
    assert {alert["subject"] for alert in refused} == {"gw-a"}
    assert not [topic for topic, _ in publisher.sent if topic.endswith("gw-x/ack")]


async def test_a_status_from_an_unknown_gateway_opens_nothing(
    store: Store, settings: ServerSettings, metrics: Metrics, probe: Probe
) -> None:
    recorder = StatusRecorder(store, settings.ingest, metrics, trust=GatewayTrust(settings))
    offline = {"gateway": "gw-x", "site": "wh1", "state": "offline", "at": BASE_TIME.isoformat()}
    result = await recorder.handle("stockgate/v1/wh1/gw-x/status", json.dumps(offline).encode())
    known = dict(offline, gateway="gw-a")
    recorded = await recorder.handle("stockgate/v1/wh1/gw-a/status", json.dumps(known).encode())

    assert result.outcome == "rejected"
    assert recorded.outcome == "recorded"
    assert [row["id"] for row in await probe.rows(schema.gateways)] == ["gw-a"]
    offline_alerts = await alerts_of(probe, "gateway_offline")
    assert [alert["subject"] for alert in offline_alerts] == ["gw-a"]
    assert [alert["subject"] for alert in await alerts_of(probe, "unknown_gateway")] == ["gw-x"]


async def test_a_future_event_is_quarantined_and_cannot_lock_a_unit(
    ingestor: Ingestor, probe: Probe, store: Store
) -> None:
    a = Batches(gateway="gw-a", epoch="aaaa0001")
    epc = sgtin(7)
    now = datetime.now(UTC)
    received = a.event(epc=epc, direction="in", at=now - timedelta(minutes=10))
    from_2099 = a.event(epc=epc, direction="in", at=datetime(2099, 1, 1, tzinfo=UTC))
    shipped = a.event(epc=epc, direction="out", at=now - timedelta(minutes=1))
    await ingestor.handle(a.topic, a.payload([received]))
    future = await ingestor.handle(a.topic, a.payload([from_2099], seq_first=2, seq_last=2))
    await ingestor.handle(a.topic, a.payload([shipped], seq_first=3, seq_last=3))

    assert (future.applied, future.dead_letters, future.acked) == (0, 1, True)
    assert (await probe.units())[epc]["status"] == "shipped"
    [letter] = await probe.dead_letters()
    assert letter["kind"] == "clock_skew"
    [alert] = await alerts_of(probe, "clock_skew")
    assert alert["subject"] == "gw-a"

    # Replayed now, it is still in the future: it waits, untouched.
    report = await replay_dead_letters(store, ingestor)
    assert report.still_refused.keys() == {letter["id"]}
    assert (await probe.units())[epc]["status"] == "shipped"


async def test_a_quarantined_event_is_applied_once_by_a_replay(
    store: Store, settings: ServerSettings, probe: Probe
) -> None:
    a = Batches(gateway="gw-a", epoch="aaaa0001")
    epc = sgtin(8)
    stamped = datetime.now(UTC) + timedelta(hours=1)  # a gateway clock 1 h ahead
    early = Ingestor(store, settings, RecordingPublisher(), Metrics())
    quarantined = await early.handle(a.topic, a.payload([a.event(epc=epc, at=stamped)]))
    assert quarantined.dead_letters == 1

    # Two hours later by the server's clock, the event's time has come.
    later = Ingestor(
        store, settings, OFFLINE, Metrics(), clock=lambda: stamped + timedelta(hours=1)
    )
    first = await replay_dead_letters(store, later)
    second = await replay_dead_letters(store, later)
    assert len(first.replayed) == 1
    assert (second.replayed, second.still_refused) == ([], {})
    assert (await probe.units())[epc]["status"] == "in_stock"
    assert len(await probe.ledger()) == 1
    [letter] = await probe.dead_letters()
    assert letter["replayed_at"] is not None


def test_the_replay_command_reports_what_waits(tmp_path: Any) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "s.db"}"\n'
        '[[api.keys]]\nkey = "admin-key-0123456789"\nrole = "admin"\n'
    )
    result = CliRunner().invoke(cli, ["server", "replay-dead-letters", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "replayed 0 dead letter(s)" in result.output


async def test_rejected_messages_are_rate_bounded_per_gateway(
    database_url: str, store: Store, probe: Probe
) -> None:
    settings = registry_settings(database_url, rejects_per_minute=5)
    ingestor = Ingestor(store, settings, RecordingPublisher(), Metrics())
    for n in range(20):
        await ingestor.handle("stockgate/v1/wh1/gw-a/events", b"x" * (n + 1))
    await ingestor.handle("stockgate/v1/wh1/gw-b/events", b"not json")
    letters = await probe.dead_letters()
    assert [letter["gateway"] for letter in letters].count("gw-a") == 5
    assert [letter["gateway"] for letter in letters].count("gw-b") == 1


@pytest.fixture
def open_ingestor(database_url: str, store: Store) -> Ingestor:
    return Ingestor(store, make_settings(database_url), RecordingPublisher(), Metrics())


async def test_without_a_registry_any_gateway_is_taken(
    open_ingestor: Ingestor, probe: Probe
) -> None:
    stranger = Batches(gateway="gw-x", epoch="eeee0001")
    result = await open_ingestor.handle(
        stranger.topic, stranger.payload([stranger.event(epc=sgtin(1), read_point="wh1.dock.2")])
    )
    assert (result.outcome, result.applied) == ("applied", 1)
