"""Retention: old dead letters and batch records are pruned; seen ids only with a horizon,
and then an event older than the horizon is refused, so pruning never lets one apply twice.
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server_helpers import Batches, Probe, RecordingPublisher, make_settings, sgtin

from server.config.settings import RetentionSettings
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store
from server.store.retention import prune
from server.store.schema import core as schema


async def test_old_records_are_pruned_and_seen_ids_kept_by_default(
    store: Store, database_url: str, probe: Probe
) -> None:
    settings = make_settings(database_url)
    now = datetime.now(UTC)
    then = now - timedelta(days=100)
    old = Ingestor(store, settings, RecordingPublisher(), Metrics(), clock=lambda: then)
    batches = Batches()
    await old.handle(batches.topic, batches.payload([batches.event(epc=sgtin(1), at=then)]))
    await old.handle(batches.topic, b"not json")
    recent = Ingestor(store, settings, RecordingPublisher(), Metrics())
    await recent.handle(batches.topic, b"not json either")

    removed = await prune(store, RetentionSettings(), now)

    assert removed == {"dead_letters": 1, "batches": 1}
    assert len(await probe.dead_letters()) == 1
    assert await probe.count(schema.seen_events) == 1  # kept: no horizon set
    # The old event sent again is still a duplicate.
    again = await recent.handle(
        batches.topic,
        batches.payload(
            [batches.event(epc=sgtin(1), at=then, event_id="gw1:0a1b2c3d:1")],
            seq_first=1,
            seq_last=1,
        ),
    )
    assert (again.applied, again.duplicates) == (0, 1)


async def test_with_a_horizon_pruned_ids_cannot_let_an_event_apply_twice(
    store: Store, database_url: str, probe: Probe
) -> None:
    settings = make_settings(database_url, retention={"seen_event_days": 30})
    now = datetime.now(UTC)
    then = now - timedelta(days=40)
    batches = Batches()
    event = batches.event(epc=sgtin(2), at=then)
    old = Ingestor(store, settings, RecordingPublisher(), Metrics(), clock=lambda: then)
    first = await old.handle(batches.topic, batches.payload([event]))
    assert first.applied == 1

    removed = await prune(store, settings.retention, now)
    assert removed["seen_events"] == 1

    repeat = await Ingestor(store, settings, RecordingPublisher(), Metrics()).handle(
        batches.topic, batches.payload([event], seq_first=1, seq_last=1)
    )
    assert (repeat.applied, repeat.dead_letters) == (0, 1)
    [letter] = await probe.dead_letters()
    assert letter["kind"] == "stale_event"
    assert len(await probe.ledger()) == 1
