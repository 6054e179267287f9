"""The server benchmark's workload: EventBatch payloads as edge gateways publish them.

``GATEWAYS`` gateways, each with its own dock door (``read_points``), publish batches of
``BATCH_EVENTS`` pass events: receipts of new SGTIN units over ``ITEMS`` GTINs, and one in
``SHIP_SHARE`` a shipment of a unit the same gateway received ``SHIP_LAG_BATCHES`` batches
earlier (so its receipt is committed first). The payloads are built once, before anything
is timed, exactly as the edge publisher builds them (``bench.server`` times them through
the server, ``bench.broker_ceiling`` through the broker alone, ``bench.sqlite_floor`` and
``bench.pg_floor`` straight into the database).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from edge.publisher import batch_id
from wire import topics
from wire.models import BatchHeader, Event, ReadEvidence

SITE: Final = "wh1"
SITES: Final = ("wh1", "wh2")
"""The sites of a workload spread over several: gateway n belongs to SITES[(n - 1) % sites]."""
GATEWAYS: Final = 4
WINDOW: Final = 8
"""Batches each publisher keeps unacknowledged at most (the edge's ``max_in_flight``)."""
BATCH_EVENTS: Final = 500
WARMUP_BATCHES: Final = 2
"""Per gateway, untimed: creates items (``ITEMS`` GTINs) and locations."""
ITEMS: Final = 200
SHIP_SHARE: Final = 5
"""One event in ``SHIP_SHARE`` is a shipment of a unit received earlier; the rest receipts."""
SHIP_LAG_BATCHES: Final = WINDOW + 2
"""A shipment ships a unit received this many batches earlier on the same gateway, so the
receipt is committed before the shipment arrives (at most ``WINDOW`` are unacknowledged)."""
BASE_TIME: Final = datetime(2024, 11, 25, 8, 0, tzinfo=UTC)
EPOCH: Final = "b3e7c0de5eed0001"


@dataclass(frozen=True, slots=True)
class Batch:
    gateway: str
    site: str
    topic: str
    batch_id: str
    events: int
    receipts: int
    shipments: int
    payload: bytes


def gateway_name(number: int) -> str:
    return f"gw-dock-{number}"


def site_of_gateway(number: int, sites: int = 1) -> str:
    return SITES[(number - 1) % sites]


def read_points(sites: int = 1) -> list[dict[str, object]]:
    """One dock door per gateway, all receiving into their site's receiving area."""
    points: list[dict[str, object]] = []
    for n in range(1, GATEWAYS + 1):
        site = site_of_gateway(n, sites)
        point: dict[str, object] = {
            "id": f"{site}.dock.{n}",
            "inbound_location": f"{site}.receiving",
            "outbound": "ship",
        }
        if sites > 1:
            point["site"] = site
        points.append(point)
    return points


def _sgtin(item: int, serial: int) -> str:
    return f"urn:epc:id:sgtin:0614141.{100_000 + item}.{serial}"


def _payload(site: str, gateway: str, seq_first: int, bodies: list[str]) -> tuple[str, bytes]:
    """An EventBatch as the edge publisher builds it (header JSON with the events spliced in)."""
    seq_last = seq_first + len(bodies) - 1
    identity = batch_id(gateway, EPOCH, seq_first, seq_last)
    header = BatchHeader(
        batch_id=identity,
        site=site,
        gateway=gateway,
        epoch=EPOCH,
        seq_first=seq_first,
        seq_last=seq_last,
        sent_at=BASE_TIME,
    ).model_dump_json()
    payload = b"".join((header[:-1].encode(), b',"events":[', ",".join(bodies).encode(), b"]}"))
    return identity, payload


def _gateway_batches(number: int, batches: int, site: str) -> Iterator[Batch]:
    """The batches of one gateway: receipts of new units, and shipments of older ones."""
    gateway = gateway_name(number)
    topic = topics.events(site, gateway)
    read_point = f"{site}.dock.{number}"
    seq = 0
    received: list[list[str]] = []
    for index in range(batches):
        shippable = received[index - SHIP_LAG_BATCHES] if index >= SHIP_LAG_BATCHES else []
        bodies: list[str] = []
        mine: list[str] = []
        receipts = shipments = 0
        for slot in range(BATCH_EVENTS):
            seq += 1
            at = BASE_TIME + timedelta(milliseconds=seq * 40 + number)
            ship = bool(shippable) and slot % SHIP_SHARE == 0
            if ship:
                epc = shippable.pop()
                shipments += 1
            else:
                epc = _sgtin(seq % ITEMS, number * 100_000_000 + seq)
                mine.append(epc)
                receipts += 1
            event = Event(
                event_id=f"{gateway}:{EPOCH}:{seq}",
                event_time=at,
                biz_step="shipping" if ship else "receiving",
                read_point=read_point,
                epc=epc,
                direction="out" if ship else "in",
                confidence=0.97,
                reads=ReadEvidence(
                    count=42,
                    antennas=[1, 2],
                    peak_rssi=-44.0,
                    first_seen=at - timedelta(seconds=3),
                    last_seen=at,
                ),
                source="llrp",
            )
            bodies.append(event.model_dump_json())
        received.append(mine)
        identity, payload = _payload(site, gateway, seq - BATCH_EVENTS + 1, bodies)
        yield Batch(gateway, site, topic, identity, BATCH_EVENTS, receipts, shipments, payload)


def build_batches(per_gateway: int, gateways: int = GATEWAYS, sites: int = 1) -> list[list[Batch]]:
    """``per_gateway`` batches for each of ``gateways`` gateways (warm-up included), the
    gateways spread over ``sites`` sites (``SITES``)."""
    return [
        list(_gateway_batches(n, per_gateway, site_of_gateway(n, sites)))
        for n in range(1, gateways + 1)
    ]


WORKLOAD_HOW: Final = (
    "EventBatch payloads of {events} pass events (4 in 5 receipts of new SGTIN units, 1 in 5 "
    "shipments of units received earlier; {items} GTINs) from {gateways} edge-like publishers "
    "(own MQTT connections, QoS 1, at most {window} batches unacknowledged each) through "
    "Mosquitto to `stockgate server`"
)


def workload_how(batches: int) -> str:
    """What ``batches`` timed batches of this workload are, for a figure's ``how``."""
    return f"{batches} " + WORKLOAD_HOW.format(
        events=BATCH_EVENTS, items=ITEMS, gateways=GATEWAYS, window=WINDOW
    )
