"""Labelled metrics: ledger rows by site, read point and kind (counted by the rollups
follower, compared with the ledger), and the gateway gauges."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from server_helpers import BASE_TIME, GTIN_B, Batches, Probe, sgtin

from server.config.history import HistorySettings
from server.history.follow import LedgerFollower
from server.history.metrics_feed import export_gateways, ledger_counter
from server.history.rollups import RollupSink
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema.core import gateways


def _samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_ledger_rows_are_counted_by_site_read_point_and_kind(
    store: Store, ingestor: Ingestor, probe: Probe
) -> None:
    wh1, wh2 = Batches(), Batches(site="wh2", gateway="gw2")
    events1 = [wh1.event(epc=sgtin(n), at=BASE_TIME + timedelta(minutes=n)) for n in range(8)]
    events1 += [wh1.event(epc=sgtin(n), direction="out") for n in range(3)]
    events1.append(wh1.event(gtin=GTIN_B, qty=4, read_point="wh1.dock.2"))
    await ingestor.handle(wh1.topic, wh1.payload(events1))
    events2 = [wh2.event(gtin=GTIN_B, qty=2, read_point="wh2.dock.1") for _ in range(3)]
    await ingestor.handle(wh2.topic, wh2.payload(events2))
    metrics = Metrics()
    follower = LedgerFollower(
        store, RollupSink(), HistorySettings(batch_rows=5), on_rows=ledger_counter(metrics)
    )
    while await follower.step():
        pass

    rows: Counter[tuple[tuple[str, str], ...]] = Counter()
    quantity: Counter[tuple[tuple[str, str], ...]] = Counter()
    ledger = await probe.ledger()
    for row in ledger:
        place = row["to_location"] or row["from_location"]
        key = tuple(
            sorted(
                {
                    "site": place.split(".")[0],
                    "read_point": row["read_point"] or "",
                    "kind": row["kind"],
                }.items()
            )
        )
        rows[key] += 1
        quantity[key] += row["quantity"]
    assert len(rows) >= 3
    assert _samples(metrics, "stockgate_ledger_rows_total") == rows
    assert _samples(metrics, "stockgate_ledger_quantity_total") == quantity
    assert _samples(metrics, "stockgate_history_position") == {
        (("follower", "rollups"),): ledger[-1]["id"]
    }


async def test_gateway_gauges_follow_the_last_status(store: Store) -> None:
    async with store.begin("test") as conn:
        for gateway, state, depth in (("gw1", "online", 12), ("gw2", "offline", 0)):
            await conn.execute(
                gateways.insert().values(
                    id=gateway,
                    site="wh1",
                    state=state,
                    status={"buffer_depth": depth},
                    status_at=BASE_TIME,
                    last_seen=BASE_TIME,
                )
            )
    metrics = Metrics()
    assert await export_gateways(store, metrics) == 2
    assert _samples(metrics, "stockgate_gateway_online") == {
        (("gateway", "gw1"), ("site", "wh1")): 1.0,
        (("gateway", "gw2"), ("site", "wh1")): 0.0,
    }
    assert _samples(metrics, "stockgate_gateway_outbox_depth") == {
        (("gateway", "gw1"), ("site", "wh1")): 12.0,
        (("gateway", "gw2"), ("site", "wh1")): 0.0,
    }
