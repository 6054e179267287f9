"""Ingest against a real database (SQLite file and PostgreSQL): exactly once, dead letters,
stock rules, Acks after commit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from server_helpers import (
    BASE_TIME,
    GTIN_A,
    GTIN_B,
    Batches,
    Probe,
    RecordingPublisher,
    make_settings,
    sgtin,
)

from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.intake import Prepared
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema import core as schema
from wire.models import MAX_PAYLOAD_BYTES, Ack


async def test_receipts_then_shipments_move_stock_units_and_ledger(
    ingestor: Ingestor, batches: Batches, probe: Probe, publisher: RecordingPublisher
) -> None:
    received = [batches.event(epc=sgtin(n)) for n in range(1, 6)]
    first = await ingestor.handle(batches.topic, batches.payload(received))
    shipped = [batches.event(epc=sgtin(n), direction="out") for n in range(1, 4)]
    second = await ingestor.handle(batches.topic, batches.payload(shipped))

    assert (first.outcome, first.applied, first.acked) == ("applied", 5, True)
    assert (second.outcome, second.applied, second.acked) == ("applied", 3, True)
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 2}
    units = await probe.units()
    assert {epc: row["status"] for epc, row in units.items()} == {
        sgtin(1): "shipped",
        sgtin(2): "shipped",
        sgtin(3): "shipped",
        sgtin(4): "in_stock",
        sgtin(5): "in_stock",
    }
    assert units[sgtin(4)]["location_id"] == "wh1.receiving"
    assert units[sgtin(1)]["location_id"] is None
    ledger = await probe.ledger()
    assert [row["kind"] for row in ledger] == ["receipt"] * 5 + ["shipment"] * 3
    assert ledger[5]["from_location"] == "wh1.receiving"
    assert ledger[5]["to_location"] is None
    assert {row["actor"] for row in ledger} == {"gw1"}
    assert ledger[0]["event_time"] == BASE_TIME + timedelta(seconds=1)
    acks = publisher.on(batches.ack_topic)
    assert [Ack.model_validate(ack).batches[0].batch_id for ack in acks] == ["gw1-b1", "gw1-b2"]
    # Locations are created on first use, with their ancestors.
    locations = await probe.rows(schema.locations, schema.locations.c.id)
    assert [(row["id"], row["parent"], row["kind"]) for row in locations] == [
        ("wh1", None, "site"),
        ("wh1.receiving", "wh1", "zone"),
    ]


async def test_same_batch_twice_applies_once_and_acks_both(
    ingestor: Ingestor,
    batches: Batches,
    probe: Probe,
    publisher: RecordingPublisher,
    metrics: Metrics,
) -> None:
    payload = batches.payload([batches.event(epc=sgtin(n)) for n in range(1, 4)])
    first = await ingestor.handle(batches.topic, payload)
    again = await ingestor.handle(batches.topic, payload)

    assert (first.outcome, first.applied, first.duplicates) == ("applied", 3, 0)
    assert (again.outcome, again.applied, again.duplicates, again.acked) == (
        "duplicate",
        0,
        3,
        True,
    )
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 3}
    assert await probe.count(schema.ledger) == 3
    assert len(publisher.on(batches.ack_topic)) == 2
    assert await probe.count(schema.batches) == 2
    text = metrics.render().decode()
    assert "stockgate_events_applied_total 3.0" in text
    assert "stockgate_events_duplicate_total 3.0" in text


async def test_same_batch_concurrently_applies_once(
    store: Store, settings: ServerSettings, batches: Batches, probe: Probe
) -> None:
    # Two ingestors (as two server instances would) race on one batch.
    publishers = [RecordingPublisher(), RecordingPublisher()]
    ingestors = [Ingestor(store, settings, pub, Metrics()) for pub in publishers]
    payload = batches.payload([batches.event(epc=sgtin(n)) for n in range(1, 21)])
    results = await asyncio.gather(*(ing.handle(batches.topic, payload) for ing in ingestors))

    assert sorted(result.applied for result in results) == [0, 20]
    assert all(result.acked for result in results)
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 20}
    assert await probe.count(schema.ledger) == 20


async def test_overlapping_batches_in_one_transaction_apply_each_event_once(
    ingestor: Ingestor, batches: Batches, probe: Probe, publisher: RecordingPublisher
) -> None:
    # The server commits every batch that queued up in one transaction: an event re-sent
    # in a later batch of the same group is a duplicate of the earlier one, not fresh.
    events = [batches.event(epc=sgtin(n)) for n in range(1, 5)]
    first = batches.payload(events[:3])
    resent = batches.payload(events[:3])
    overlapping = batches.payload(events[1:])
    group = [
        await ingestor.prepare(batches.topic, payload) for payload in (first, resent, overlapping)
    ]
    assert all(isinstance(prepared, Prepared) for prepared in group)
    results = await ingestor.apply([p for p in group if isinstance(p, Prepared)])

    assert [(r.outcome, r.applied, r.duplicates) for r in results] == [
        ("applied", 3, 0),
        ("duplicate", 0, 3),
        ("applied", 1, 2),
    ]
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 4}
    assert await probe.count(schema.ledger) == 4
    assert await probe.count(schema.seen_events) == 4
    assert len(publisher.on(batches.ack_topic)) == 1  # one Ack message for the gateway


async def test_a_group_of_several_gateways_applies_in_event_time_order(
    ingestor: Ingestor, probe: Probe, publisher: RecordingPublisher
) -> None:
    # A group holds batches of two gateways of one site and one of another site. Planned
    # together: each ledger row names the gateway of its event, each batch record counts
    # its own events, and a unit shipped (dock 1, gw1) at 08:00:10 that gw2 received at
    # 08:00:05 but published later is shipped from stock, not "not in stock".
    gw1, gw2, far = (
        Batches(gateway="gw1"),
        Batches(gateway="gw2"),
        Batches(site="wh2", gateway="gw9"),
    )
    unit = sgtin(7)
    shipped = gw1.event(epc=unit, direction="out", at=BASE_TIME + timedelta(seconds=10))
    received = gw2.event(epc=unit, read_point="wh1.dock.2", at=BASE_TIME + timedelta(seconds=5))
    other = gw2.event(epc=sgtin(8), read_point="wh1.dock.2", at=BASE_TIME + timedelta(seconds=6))
    away = far.event(epc=sgtin(9), read_point="wh2.dock.1")
    messages = [
        (gw1.topic, gw1.payload([shipped])),
        (gw2.topic, gw2.payload([received, other])),
        (gw2.topic, gw2.payload([other])),  # a re-send within the group: a duplicate
        (far.topic, far.payload([away])),
    ]
    group = [await ingestor.prepare(topic, payload) for topic, payload in messages]
    results = await ingestor.apply([p for p in group if isinstance(p, Prepared)])

    assert [(r.outcome, r.applied, r.duplicates, r.movements) for r in results] == [
        ("applied", 1, 0, 1),
        ("applied", 2, 0, 2),
        ("duplicate", 0, 1, 0),
        ("applied", 1, 0, 1),
    ]
    ledger = {row["event_id"]: row for row in await probe.ledger()}
    assert {event_id: row["actor"] for event_id, row in ledger.items()} == {
        shipped["event_id"]: "gw1",
        received["event_id"]: "gw2",
        other["event_id"]: "gw2",
        away["event_id"]: "gw9",
    }
    assert ledger[shipped["event_id"]]["from_location"] == "wh1.receiving.overflow"
    assert (await probe.units())[unit]["status"] == "shipped"
    assert not [a for a in await probe.alerts() if a["kind"] == "unit_not_in_stock"]
    records = await probe.rows(schema.batches, schema.batches.c.id)
    assert [(r["gateway"], r["events"], r["applied"], r["duplicates"]) for r in records] == [
        ("gw1", 1, 1, 0),
        ("gw2", 2, 2, 0),
        ("gw2", 1, 0, 1),
        ("gw9", 1, 1, 0),
    ]
    assert len(publisher.on(gw2.ack_topic)) == 1  # one Ack message per gateway


async def test_one_invalid_event_is_dead_lettered_and_the_rest_apply(
    ingestor: Ingestor, batches: Batches, probe: Probe, publisher: RecordingPublisher
) -> None:
    bad = batches.event(epc=sgtin(2))
    bad["quantity"] = {"gtin": GTIN_A, "qty": 1}  # both identities: invalid
    events = [batches.event(epc=sgtin(1)), bad, batches.event(epc=sgtin(3))]
    result = await ingestor.handle(batches.topic, batches.payload(events))

    assert (result.outcome, result.applied, result.dead_letters, result.acked) == (
        "applied",
        2,
        1,
        True,
    )
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 2}
    [letter] = await probe.dead_letters()
    assert "exactly one of epc and quantity" in letter["reason"]
    assert letter["event_id"] == bad["event_id"]
    assert letter["gateway"] == "gw1"
    assert json.loads(letter["payload"])["epc"] == sgtin(2)
    assert len(publisher.on(batches.ack_topic)) == 1


async def test_unknown_read_point_is_dead_lettered(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    events = [batches.event(epc=sgtin(1), read_point="wh9.nowhere"), batches.event(epc=sgtin(2))]
    result = await ingestor.handle(batches.topic, batches.payload(events))

    assert (result.applied, result.dead_letters, result.acked) == (1, 1, True)
    [letter] = await probe.dead_letters()
    assert letter["reason"] == "unknown read point 'wh9.nowhere'"


async def test_read_point_of_another_site_is_dead_lettered(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    result = await ingestor.handle(
        batches.topic, batches.payload([batches.event(epc=sgtin(1), read_point="wh2.dock.1")])
    )
    assert (result.applied, result.dead_letters) == (0, 1)
    [letter] = await probe.dead_letters()
    assert "belongs to site 'wh2', not 'wh1'" in letter["reason"]


async def test_garbage_payload_is_dead_lettered_and_the_next_batch_applies(
    ingestor: Ingestor,
    batches: Batches,
    probe: Probe,
    publisher: RecordingPublisher,
    metrics: Metrics,
) -> None:
    garbage = b"\xff\x00not json at all"
    rejected = await ingestor.handle(batches.topic, garbage)
    nested = await ingestor.handle(batches.topic, b"[" * 100_000)
    not_a_batch = await ingestor.handle(batches.topic, b'{"hello": "world"}')
    applied = await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(1))]))

    assert [r.outcome for r in (rejected, nested, not_a_batch, applied)] == [
        "rejected",
        "rejected",
        "rejected",
        "applied",
    ]
    assert not rejected.acked
    assert rejected.reason is not None
    assert rejected.reason == "payload is not JSON: not UTF-8 (invalid start byte at byte 0)"
    assert not_a_batch.reason is not None
    assert "batch_id: Field required" in not_a_batch.reason
    letters = await probe.dead_letters()
    assert len(letters) == 3
    assert letters[0]["payload"] == "\\xff\\x00not json at all"
    assert letters[0]["payload_bytes"] == len(garbage)
    assert letters[1]["truncated"] is True  # 100 kB of brackets, cut to the 64 kB bound
    assert len(letters[1]["payload"]) == 65_536
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 1}
    assert len(publisher.on(batches.ack_topic)) == 1  # only the good batch's Ack
    assert 'stockgate_dead_letters_total{kind="json"} 2.0' in metrics.render().decode()


async def test_oversized_payload_is_rejected_unparsed(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    result = await ingestor.handle(batches.topic, b" " * (MAX_PAYLOAD_BYTES + 1))
    assert result.outcome == "rejected"
    assert (
        result.reason
        == f"payload of {MAX_PAYLOAD_BYTES + 1} bytes exceeds {MAX_PAYLOAD_BYTES} bytes"
    )
    [letter] = await probe.dead_letters()
    assert letter["payload_bytes"] == MAX_PAYLOAD_BYTES + 1


async def test_batch_from_another_gateway_than_its_topic_is_rejected(
    ingestor: Ingestor, batches: Batches, probe: Probe, publisher: RecordingPublisher
) -> None:
    payload = batches.payload([batches.event(epc=sgtin(1))], gateway="gw-intruder")
    result = await ingestor.handle(batches.topic, payload)

    assert (result.outcome, result.acked) == ("rejected", False)
    assert result.reason is not None
    assert "gateway 'gw-intruder'" in result.reason
    assert "gateway 'gw1'" in result.reason
    assert await probe.count(schema.ledger) == 0
    [letter] = await probe.dead_letters()
    assert letter["gateway"] == "gw1"
    assert publisher.sent == []


async def test_message_on_a_foreign_topic_is_rejected(ingestor: Ingestor, probe: Probe) -> None:
    result = await ingestor.handle("somebody/else/events", b"{}")
    assert result.outcome == "rejected"
    assert result.reason is not None
    assert "not a stockgate v1 gateway topic" in result.reason
    assert len(await probe.dead_letters()) == 1


async def test_unknown_gtin_creates_unreviewed_item_and_one_alert(
    ingestor: Ingestor, batches: Batches, probe: Probe, publisher: RecordingPublisher
) -> None:
    first = await ingestor.handle(
        batches.topic, batches.payload([batches.event(epc=sgtin(1)), batches.event(epc=sgtin(2))])
    )
    second = await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(3))]))

    assert (first.applied, second.applied) == (2, 1)
    items = await probe.items()
    assert items[GTIN_A]["gtin"] == GTIN_A
    assert items[GTIN_A]["reviewed"] is False
    alerts = await probe.alerts()
    assert [(a["kind"], a["subject"], a["site"]) for a in alerts] == [
        ("unknown_item", GTIN_A, "wh1")
    ]
    assert alerts[0]["evidence"]["epc"] == sgtin(1)
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 3}
    published = publisher.on("stockgate/v1/wh1/alerts")
    assert [(a["kind"], a["subject"]) for a in published] == [("unknown_item", GTIN_A)]


async def test_unit_location_follows_event_time_not_arrival_order(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    epc = sgtin(7)
    t1, t2, t3 = (BASE_TIME + timedelta(minutes=m) for m in (1, 2, 3))
    # The shipment (t3) arrives first, the receipt (t1) afterwards.
    await ingestor.handle(
        batches.topic, batches.payload([batches.event(epc=epc, direction="out", at=t3)])
    )
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=epc, at=t1)]))

    unit = (await probe.units())[epc]
    assert (unit["status"], unit["location_id"], unit["last_event_time"]) == ("shipped", None, t3)
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 0}
    assert [row["kind"] for row in await probe.ledger()] == ["shipment", "receipt"]

    # Inside one batch too: the events are applied in event-time order.
    other = sgtin(8)
    late_in = batches.event(epc=other, at=t2, read_point="wh1.dock.2")
    early_in = batches.event(epc=other, at=t1)
    await ingestor.handle(batches.topic, batches.payload([late_in, early_in]))
    unit = (await probe.units())[other]
    assert (unit["location_id"], unit["last_event_time"]) == ("wh1.receiving.overflow", t2)


async def test_event_time_ties_are_broken_by_event_id(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    epc = sgtin(9)
    at = BASE_TIME + timedelta(minutes=5)
    higher = batches.event(epc=epc, at=at, event_id="gw1:0a1b2c3d:900", read_point="wh1.dock.2")
    lower = batches.event(epc=epc, at=at, event_id="gw1:0a1b2c3d:100")
    await ingestor.handle(batches.topic, batches.payload([higher], seq_first=900, seq_last=900))
    await ingestor.handle(batches.topic, batches.payload([lower], seq_first=100, seq_last=100))

    unit = (await probe.units())[epc]
    assert (unit["location_id"], unit["last_event_id"]) == (
        "wh1.receiving.overflow",
        "gw1:0a1b2c3d:900",
    )


async def test_shipping_a_unit_not_in_stock_records_it_and_alerts(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    await ingestor.handle(
        batches.topic, batches.payload([batches.event(epc=sgtin(1), direction="out")])
    )
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): -1}
    [row] = await probe.ledger()
    assert (row["kind"], row["from_location"], row["to_location"]) == (
        "shipment",
        "wh1.receiving",
        None,
    )
    kinds = {(a["kind"], a["subject"]) for a in await probe.alerts()}
    assert ("unit_not_in_stock", sgtin(1)) in kinds


async def test_receiving_a_unit_twice_alerts_and_counts_it_twice(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    await ingestor.handle(
        batches.topic,
        batches.payload([batches.event(epc=sgtin(1)), batches.event(epc=sgtin(1))]),
    )
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 2}
    kinds = [a["kind"] for a in await probe.alerts()]
    assert kinds == ["unknown_item", "unit_already_in_stock"]


async def test_barcode_quantities_move_stock_without_units(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    events = [
        batches.event(gtin=GTIN_B, qty=5),
        batches.event(gtin=GTIN_B, qty=2, direction="out"),
        batches.event(gtin="4006381333931".zfill(14), qty=4, read_point="wh1.dock.2"),
    ]
    result = await ingestor.handle(batches.topic, batches.payload(events))

    assert result.applied == 3
    assert await probe.balances() == {
        (GTIN_B, "wh1.receiving"): 3,
        ("04006381333931", "wh1.receiving.overflow"): 4,
    }
    assert await probe.units() == {}
    assert [row["quantity"] for row in await probe.ledger()] == [5, 2, 4]


async def test_events_without_stock_effect_are_only_recorded_as_seen(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    events = [
        batches.event(epc=sgtin(1), direction=None),
        batches.event(epc=sgtin(2), direction="out", read_point="wh1.gate"),  # outbound ignore
    ]
    payload = batches.payload(events)
    first = await ingestor.handle(batches.topic, payload)
    again = await ingestor.handle(batches.topic, payload)

    assert (first.applied, first.movements, again.duplicates) == (2, 0, 2)
    assert await probe.count(schema.ledger) == 0
    assert await probe.count(schema.seen_events) == 2
    assert await probe.count(schema.items) == 0


async def test_unidentified_epcs_move_stock_under_a_scheme_item(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    raw = "urn:epc:raw:96.x3034F4D2D8C0D4A000000001"
    grai = "urn:epc:id:grai:0614141.12345.400"
    events = [batches.event(epc=grai), batches.event(epc=raw), batches.event(epc=raw + "2")]
    await ingestor.handle(batches.topic, batches.payload(events))

    assert await probe.balances() == {
        ("epc:grai", "wh1.receiving"): 1,
        ("epc:raw", "wh1.receiving"): 2,
    }
    items = await probe.items()
    assert items["epc:raw"]["gtin"] is None
    assert sorted((a["kind"], a["subject"]) for a in await probe.alerts()) == [
        ("unidentified_epc", "epc:grai"),
        ("unidentified_epc", "epc:raw"),
    ]


async def test_a_pallet_nobody_recorded_moves_nothing_and_is_alerted(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    # An SSCC is a pallet, not a unit: without known contents nothing moves (not a
    # pseudo-item "epc:sscc"); tests/server/test_server_pallets.py has the rest.
    sscc = "urn:epc:id:sscc:0614141.1234567890"
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sscc)]))

    assert await probe.balances() == {}
    assert "epc:sscc" not in await probe.items()
    assert [(a["kind"], a["subject"]) for a in await probe.alerts()] == [
        ("unknown_pallet", "106141412345678908")
    ]


async def test_failed_ack_keeps_the_commit_and_the_resend_is_acked(
    ingestor: Ingestor,
    batches: Batches,
    probe: Probe,
    publisher: RecordingPublisher,
    metrics: Metrics,
) -> None:
    payload = batches.payload([batches.event(epc=sgtin(1))])
    publisher.fail = True
    lost = await ingestor.handle(batches.topic, payload)
    publisher.fail = False
    resent = await ingestor.handle(batches.topic, payload)

    assert (lost.outcome, lost.acked) == ("applied", False)
    assert (resent.outcome, resent.acked) == ("duplicate", True)
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 1}
    assert "stockgate_acks_failed_total 1.0" in metrics.render().decode()


async def test_database_failure_sends_no_ack_and_the_resend_applies(
    tmp_path: Path, batches: Batches
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/locked.db"
    settings = make_settings(url, database={"url": url, "busy_timeout_s": 0.05})
    store = Store.open(settings.database)
    await store.migrate()
    publisher = RecordingPublisher()
    ingestor = Ingestor(store, settings, publisher, Metrics())
    payload = batches.payload([batches.event(epc=sgtin(1))])
    # Another writer holds the database's write lock for longer than the busy timeout.
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        failed = await ingestor.handle(batches.topic, payload)
        holder.execute("ROLLBACK")
        resent = await ingestor.handle(batches.topic, payload)
    finally:
        holder.close()
        await store.close()

    assert (failed.outcome, failed.acked) == ("failed", False)
    assert (resent.outcome, resent.applied, resent.acked) == ("applied", 1, True)
    assert len(publisher.sent) == 2  # the resend's Ack and its unknown-item alert


@pytest.mark.parametrize("control", ["\x01", "\x7f"])
async def test_a_control_character_in_an_otherwise_valid_batch_is_dead_lettered(
    ingestor: Ingestor, batches: Batches, probe: Probe, control: str
) -> None:
    # Nothing else is wrong with the batch (it takes the whole-batch path): the one EPC
    # with a control character (sent escaped, or DEL as it is) is still a dead letter.
    bad = batches.event(epc=sgtin(1) + control)
    payload = batches.payload([batches.event(epc=sgtin(2)), bad])
    assert (b"\\u0001" in payload) == (control == "\x01")
    result = await ingestor.handle(batches.topic, payload)

    assert (result.outcome, result.applied, result.dead_letters) == ("applied", 1, 1)
    [letter] = await probe.dead_letters()
    assert letter["reason"] == "invalid event: event_id or epc holds control characters"


async def test_events_that_could_not_be_stored_are_dead_lettered_not_fatal(
    ingestor: Ingestor, batches: Batches, probe: Probe, publisher: RecordingPublisher
) -> None:
    nul_id = batches.event(epc=sgtin(1), event_id="gw1:\x00:1")
    far_past = batches.event(epc=sgtin(2))
    far_past["event_time"] = "0001-01-01T00:00:00+05:00"  # before year 1 in UTC
    good = batches.event(epc=sgtin(3))
    payload = batches.payload([nul_id, far_past, good], batch_id="gw1-\x00-batch")
    result = await ingestor.handle(batches.topic, payload)

    assert (result.outcome, result.applied, result.dead_letters, result.acked) == (
        "applied",
        1,
        2,
        True,
    )
    reasons = [letter["reason"] for letter in await probe.dead_letters()]
    assert reasons[0] == "invalid event: event_id or epc holds control characters"
    assert reasons[1].startswith("invalid event: event_time: ")
    assert "outside the range" in reasons[1]
    [batch] = await probe.rows(schema.batches)
    assert batch["batch_id"] == "gw1-\\x00-batch"
    [ack] = publisher.on(batches.ack_topic)
    assert ack["batches"][0]["batch_id"] == "gw1-\x00-batch"  # acked with the id it came with


async def test_a_batch_whose_header_time_overflows_is_rejected(
    ingestor: Ingestor, batches: Batches
) -> None:
    body = json.loads(batches.payload([batches.event(epc=sgtin(1))]))
    body["sent_at"] = "9999-12-31T23:59:59-05:00"
    result = await ingestor.handle(batches.topic, json.dumps(body).encode())
    assert result.outcome == "rejected"
    assert result.reason is not None
    assert result.reason.startswith("not a valid event batch: sent_at: ")
    assert "outside the range" in result.reason


async def test_the_acks_of_a_group_go_out_together_not_one_puback_after_another(
    store: Store, settings: ServerSettings
) -> None:
    # Waiting for each gateway's PUBACK before the next Ack kept the later gateways waiting
    # behind the first one's next batches. This broker answers no publish until it holds
    # one from every gateway of the group: Acks sent one after another would time out.
    gateways = [Batches(gateway=f"gw{n}") for n in (1, 2, 3)]
    acks: list[str] = []
    everyone = asyncio.Event()

    async def publish(topic: str, payload: bytes) -> None:
        if not topic.endswith("/ack"):
            return  # alerts go out after the Acks
        acks.append(topic)
        if len(acks) == len(gateways):
            everyone.set()
        await everyone.wait()

    ingestor = Ingestor(store, settings, publish, Metrics())
    group = [
        await ingestor.prepare(gw.topic, gw.payload([gw.event(epc=sgtin(n))]))
        for n, gw in enumerate(gateways)
    ]

    async with asyncio.timeout(5):
        results = await ingestor.apply([p for p in group if isinstance(p, Prepared)])

    assert [r.acked for r in results] == [True, True, True]
    assert sorted(acks) == sorted(gw.ack_topic for gw in gateways)
