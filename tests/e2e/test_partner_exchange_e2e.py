"""Partner exchange and replenishment end to end, on real parts, on SQLite and PostgreSQL.

A ``stockgate`` server (its own API port, a real Mosquitto started by the fixture) takes a
supplier's EPCIS shipping notice over HTTP, portal receipts and customer shipments as a
gateway publishes them over MQTT, reconciles the receipts against the notice (alerts for
the unit not listed and, on closing, the unit never received), serves it all back as
schema-valid EPCIS, and plans replenishment from the shipments it ingested: reorder point
-> draft purchase order -> ``reorder_suggested`` -> an operator's confirmation.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from jsonschema import Draft7Validator

from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings, load
from server.config.settings import ServerSettings
from tests.e2e.settle import eventually
from tests.e2e.stack import api_client, serving
from wire.models import now_utc

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

DATA = Path(__file__).resolve().parents[1] / "data" / "epcis"
VALIDATOR = Draft7Validator(
    json.loads((DATA / "EPCIS-JSON-Schema.json").read_text()),
    format_checker=Draft7Validator.FORMAT_CHECKER,
)
NOTICE = (DATA / "Example_9.6.1-ObjectEvent.jsonld").read_bytes()
"""The standard's example: a shipping event for order 12345678 listing serials 2017, 2018."""
EXAMPLE_GTIN = "10614141073464"
EXAMPLE_EPC = "urn:epc:id:sgtin:0614141.107346.{}"
STOCK_GTIN = "80614141123458"
RECEIVING_SGLN = "urn:epc:id:sgln:0614141.07346.0"
SITE, GATEWAY = "wh1", "gw-e2e"
DEADLINE_S = 60.0
PG = "postgresql://postgres@127.0.0.1:5432"


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(f"{PG}/test", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
        return
    name = f"stockgate_e2e_{uuid.uuid4().hex[:12]}"
    await _pg(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Gateway:
    """Publishes event batches over MQTT as an edge gateway does."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.seq = 0
        self.batches = 0

    def event(
        self,
        *,
        epc: str | None = None,
        gtin: str | None = None,
        qty: int = 1,
        direction: str = "in",
        at: datetime | None = None,
    ) -> dict[str, Any]:
        self.seq += 1
        event: dict[str, Any] = {
            "event_id": f"{GATEWAY}:0e2e0e2e:{self.seq}",
            "event_time": (at or now_utc()).isoformat(),
            "action": "OBSERVE",
            "biz_step": "receiving" if direction == "in" else "shipping",
            "read_point": "wh1.dock.1",
            "direction": direction,
            "source": "llrp" if epc else "serial",
        }
        if epc is not None:
            event["epc"] = epc
        if gtin is not None:
            event["quantity"] = {"gtin": gtin, "qty": qty}
        return event

    async def send(self, *events: dict[str, Any]) -> None:
        self.batches += 1
        batch = {
            "version": 1,
            "batch_id": f"{GATEWAY}-b{self.batches}",
            "site": SITE,
            "gateway": GATEWAY,
            "epoch": "0e2e0e2e",
            "seq_first": self.seq - len(events) + 1,
            "seq_last": self.seq,
            "sent_at": now_utc().isoformat(),
            "events": list(events),
        }
        topic = f"stockgate/v1/{SITE}/{GATEWAY}/events"
        await self.client.publish(topic, json.dumps(batch).encode(), qos=1)


@pytest.fixture
async def running(
    mosquitto: Any, database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    key = secrets.token_urlsafe(24)
    settings = load(
        ServerSettings,
        mqtt={"url": mosquitto.url, "client_id": f"e2e-{uuid.uuid4().hex[:8]}"},
        database={"url": database_url},
        api={"host": "127.0.0.1", "port": 0, "keys": [{"key": key, "role": "admin"}]},
        read_points=[{"id": "wh1.dock.1", "inbound_location": "wh1.receiving"}],
        replenishment={"enabled": False, "demand_window_days": 28},
    )
    gateway_client = MqttClient(
        MqttSettings(url=mosquitto.url), f"{GATEWAY}-{uuid.uuid4().hex[:6]}"
    )
    async with gateway_client, serving(settings) as server:
        await gateway_client.wait_connected(10)
        async with api_client(server, key) as api:
            yield api, Gateway(gateway_client)


async def ok(response: Awaitable[httpx.Response]) -> Any:
    answer = await response
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


async def test_asn_receipt_reconciliation_and_replenishment_over_real_parts(
    running: tuple[httpx.AsyncClient, Gateway],
) -> None:
    api, gateway = running
    for item in (
        {"sku": "EXAMPLE", "gtin": EXAMPLE_GTIN, "name": "GS1 example item"},
        {"sku": "WIDGET", "gtin": STOCK_GTIN, "name": "Widget"},
    ):
        await ok(api.post("/api/v1/items", json=item))
    # The read point created the receiving location; the master data gives it its SGLN.
    receiving = {"name": "Receiving", "sgln": RECEIVING_SGLN}
    await ok(api.patch("/api/v1/locations/wh1.receiving", json=receiving))
    order = await ok(
        api.post(
            "/api/v1/purchase-orders",
            json={
                "number": "12345678",
                "location": "wh1.receiving",
                "partner": "ACME",
                "status": "open",
                "lines": [{"gtin": EXAMPLE_GTIN, "quantity": 2}],
            },
        )
    )

    # The supplier's EPCIS shipping notice becomes the order's expected units.
    notice = await ok(
        api.post(
            "/api/v1/epcis/capture",
            content=NOTICE,
            headers={"Content-Type": "application/ld+json"},
        )
    )
    assert (notice["units"], notice["orders"]) == (2, ["12345678"])

    # The dock door reads one listed unit and one the notice did not list, over MQTT.
    await gateway.send(
        gateway.event(epc=EXAMPLE_EPC.format(2018)), gateway.event(epc=EXAMPLE_EPC.format(2099))
    )

    async def reconciled() -> bool:
        report = await ok(api.get(f"/api/v1/purchase-orders/{order['id']}/asn"))
        return bool(report["received"] == 1)

    await eventually(reconciled, "the receipt to reconcile against the notice", DEADLINE_S)
    alerts = (await ok(api.get("/api/v1/alerts")))["items"]
    (unexpected,) = [a for a in alerts if a["kind"] == "asn_unexpected_units"]
    assert unexpected["evidence"]["epcs"] == [EXAMPLE_EPC.format(2099)]
    await ok(api.post(f"/api/v1/purchase-orders/{order['id']}/status", json={"status": "closed"}))
    alerts = (await ok(api.get("/api/v1/alerts")))["items"]
    (missing,) = [a for a in alerts if a["kind"] == "asn_missing_units"]
    assert missing["evidence"]["epcs"] == [EXAMPLE_EPC.format(2017)]

    # What the portal did, back out as EPCIS: schema-valid, at the location's SGLN.
    document = await ok(api.get("/api/v1/epcis/events", params={"EQ_bizStep": "receiving"}))
    errors = [error.message for error in VALIDATOR.iter_errors(document)]
    assert errors == []
    events = document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert sorted(e["epcList"][0] for e in events) == [
        EXAMPLE_EPC.format(2018),
        EXAMPLE_EPC.format(2099),
    ]
    assert {e["bizLocation"]["id"] for e in events} == {RECEIVING_SGLN}

    # Demand history through ingest: stock received, four weeks of customer shipments.
    start = now_utc() - timedelta(days=29)
    await gateway.send(gateway.event(gtin=STOCK_GTIN, qty=150, at=start))
    shipped = [4 + day % 5 for day in range(28)]
    await gateway.send(
        *(
            gateway.event(
                gtin=STOCK_GTIN, qty=qty, direction="out", at=start + timedelta(days=day + 1)
            )
            for day, qty in enumerate(shipped)
        )
    )

    async def ingested() -> bool:
        stock = (await ok(api.get("/api/v1/stock", params={"sku": "WIDGET"})))["items"]
        return sum(row["on_hand"] for row in stock) == 150 - sum(shipped)

    await eventually(ingested, "the shipments to be ingested", DEADLINE_S)
    run = await ok(api.post("/api/v1/replenishment/run"))
    (draft,) = run["drafts"]
    plans = (await ok(api.get("/api/v1/replenishment/plans", params={"sku": "WIDGET"})))["items"]
    (plan,) = plans
    computed = plan["figures"]["computed"]
    assert computed["d_bar"] == pytest.approx(sum(shipped) / 28, abs=1e-3)
    assert plan["figures"]["position"]["projected"] <= plan["reorder_point"]
    alerts = (await ok(api.get("/api/v1/alerts")))["items"]
    (suggested,) = [a for a in alerts if a["kind"] == "reorder_suggested"]
    assert suggested["evidence"]["order_id"] == draft["order_id"]
    confirmed = await ok(api.post(f"/api/v1/replenishment/drafts/{draft['order_id']}/confirm"))
    assert confirmed["status"] == "open"
    stock = (await ok(api.get("/api/v1/stock", params={"sku": "WIDGET"})))["items"]
    assert sum(row["on_order"] for row in stock) == draft["lines"][0][1]
