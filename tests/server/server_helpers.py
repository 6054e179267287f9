"""Builders shared by the server tests (a uniquely named module; test dirs are not packages)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter

from plumbing.settings import load
from server.config.settings import ServerSettings
from server.errors import PublishFailed
from server.ingest.consumer import Ingestor
from server.ingest.intake import Prepared
from server.store.database import Store
from server.store.schema import core as schema

VIEWER_KEY = "viewer-key-0123456789"
OPERATOR_KEY = "operator-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"

BASE_TIME = datetime(2024, 11, 25, 8, 0, 0, tzinfo=UTC)


def sgtin(serial: int, item_ref: str = "812345") -> str:
    """An SGTIN URN of company 0614141; item ref 812345 has GTIN 80614141123458."""
    return f"urn:epc:id:sgtin:0614141.{item_ref}.{serial}"


GTIN_A = "80614141123458"  # sgtin(n) with the default item ref
GTIN_B = "10614141123459"  # sgtin(n, "112345")


def make_settings(database_url: str, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "database": {"url": database_url},
        "api": {
            "host": "127.0.0.1",
            "port": 0,
            "keys": [
                {"key": VIEWER_KEY, "role": "viewer", "name": "alice"},
                {"key": OPERATOR_KEY, "role": "operator", "name": "olga"},
                {"key": ADMIN_KEY, "role": "admin"},
            ],
        },
        "read_points": [
            {"id": "wh1.dock.1", "inbound_location": "wh1.receiving", "outbound": "ship"},
            {"id": "wh1.dock.2", "inbound_location": "wh1.receiving.overflow"},
            {"id": "wh1.gate", "inbound_location": "wh1.yard", "outbound": "ignore"},
            {"id": "wh2.dock.1", "inbound_location": "wh2.receiving", "site": "wh2"},
            {"id": "wh10.dock.1", "inbound_location": "wh10.receiving"},
        ],
    }
    values.update(overrides)
    return load(ServerSettings, None, **values)


@dataclass
class RecordingPublisher:
    """The ingest's publish port: records what would go to the broker."""

    sent: list[tuple[str, bytes]] = field(default_factory=list)
    fail: bool = False

    async def __call__(self, topic: str, payload: bytes) -> None:
        if self.fail:
            raise PublishFailed("broker unreachable (test)")
        self.sent.append((topic, payload))

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(payload) for sent_topic, payload in self.sent if sent_topic == topic]


class Batches:
    """Builds wire-format event batches the way an edge would (ids from gateway and epoch)."""

    def __init__(self, site: str = "wh1", gateway: str = "gw1", epoch: str = "0a1b2c3d") -> None:
        self.site = site
        self.gateway = gateway
        self.epoch = epoch
        self.seq = 0
        self.batches = 0

    def event(
        self,
        *,
        epc: str | None = None,
        gtin: str | None = None,
        qty: int = 1,
        direction: str | None = "in",
        read_point: str = "wh1.dock.1",
        at: datetime | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        self.seq += 1
        when = at if at is not None else BASE_TIME + timedelta(seconds=self.seq)
        event: dict[str, Any] = {
            "event_id": event_id or f"{self.gateway}:{self.epoch}:{self.seq}",
            "event_time": when.isoformat(),
            "action": "OBSERVE",
            "biz_step": "receiving" if direction == "in" else "shipping",
            "read_point": read_point,
            "direction": direction,
            "source": "llrp" if epc is not None else "serial",
        }
        if epc is not None:
            event["epc"] = epc
        if gtin is not None:
            event["quantity"] = {"gtin": gtin, "qty": qty}
        return event

    def payload(
        self,
        events: list[dict[str, Any]],
        *,
        site: str | None = None,
        gateway: str | None = None,
        batch_id: str | None = None,
        seq_first: int = 1,
        seq_last: int | None = None,
    ) -> bytes:
        self.batches += 1
        body = {
            "version": 1,
            "batch_id": batch_id or f"{self.gateway}-b{self.batches}",
            "site": site or self.site,
            "gateway": gateway or self.gateway,
            "epoch": self.epoch,
            "seq_first": seq_first,
            "seq_last": seq_last if seq_last is not None else max(seq_first, self.seq),
            "sent_at": BASE_TIME.isoformat(),
            "events": events,
        }
        return json.dumps(body).encode()

    @property
    def topic(self) -> str:
        return f"stockgate/v1/{self.site}/{self.gateway}/events"

    @property
    def ack_topic(self) -> str:
        return f"stockgate/v1/{self.site}/{self.gateway}/ack"


class Probe:
    """Reads tables directly, so tests check what was stored, not what the API says."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def rows(self, table: sa.Table, *order: sa.ColumnElement[Any]) -> list[dict[str, Any]]:
        async with self.store.engine.connect() as conn:
            result = await conn.execute(sa.select(table).order_by(*order))
            return [dict(row._mapping) for row in result]

    async def balances(self) -> dict[tuple[str, str], int]:
        """(sku, location) -> on hand."""
        async with self.store.engine.connect() as conn:
            result = await conn.execute(
                sa.select(
                    schema.items.c.sku, schema.balances.c.location_id, schema.balances.c.on_hand
                ).join(schema.items, schema.items.c.id == schema.balances.c.item_id)
            )
            return {(row.sku, row.location_id): row.on_hand for row in result}

    async def ledger(self) -> list[dict[str, Any]]:
        return await self.rows(schema.ledger, schema.ledger.c.id)

    async def units(self) -> dict[str, dict[str, Any]]:
        return {row["epc"]: row for row in await self.rows(schema.units, schema.units.c.epc)}

    async def items(self) -> dict[str, dict[str, Any]]:
        return {row["sku"]: row for row in await self.rows(schema.items, schema.items.c.id)}

    async def dead_letters(self) -> list[dict[str, Any]]:
        return await self.rows(schema.dead_letters, schema.dead_letters.c.id)

    async def alerts(self) -> list[dict[str, Any]]:
        return await self.rows(schema.alerts, schema.alerts.c.id)

    async def count(self, table: sa.Table) -> int:
        async with self.store.engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


# Keys restricted to sites (``[[api.keys]] sites``), beside the three of ``make_settings``.
WH1_OPERATOR_KEY = "wh1-operator-key-0123456789"
WH1_ADMIN_KEY = "wh1-admin-key-0123456789"
WH2_VIEWER_KEY = "wh2-viewer-key-0123456789"


def make_scoped_settings(database_url: str, **overrides: Any) -> ServerSettings:
    """``make_settings`` plus keys restricted to sites wh1 (operator, admin) and wh2 (viewer)."""
    keys = [
        {"key": VIEWER_KEY, "role": "viewer", "name": "alice"},
        {"key": OPERATOR_KEY, "role": "operator", "name": "olga"},
        {"key": ADMIN_KEY, "role": "admin"},
        {"key": WH1_OPERATOR_KEY, "role": "operator", "name": "wh1-olga", "sites": ["wh1"]},
        {"key": WH1_ADMIN_KEY, "role": "admin", "name": "wh1-adam", "sites": ["wh1"]},
        {"key": WH2_VIEWER_KEY, "role": "viewer", "name": "wh2-vera", "sites": ["wh2"]},
    ]
    api = {"host": "127.0.0.1", "port": 0, "keys": keys}
    return make_settings(database_url, api=api, **overrides)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def checked(ingestor: Ingestor, batches: Batches, events: list[dict[str, Any]]) -> Prepared:
    """``events`` as one batch checked by ``ingestor`` (it must pass)."""
    prepared = await ingestor.prepare(batches.topic, batches.payload(events))
    assert isinstance(prepared, Prepared)
    return prepared


@contextlib.asynccontextmanager
async def balance_rows_held(store: Store, location: str) -> AsyncIterator[None]:
    """Another PostgreSQL transaction holds ``location``'s balance rows (``FOR UPDATE``), as
    an instance applying that site's batches would, until the block ends (rolled back)."""
    async with store.engine.connect() as other:
        await other.begin()
        await other.execute(
            sa.select(schema.balances)
            .where(schema.balances.c.location_id == location)
            .with_for_update()
        )
        try:
            yield
        finally:
            await other.rollback()


def counter_totals(counter: Counter, label: str) -> dict[str, float]:
    """A labelled counter's totals (``server.metrics``) by the value of ``label``."""
    return {
        sample.labels[label]: sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists and is not a zombie (ended, not yet reaped)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False  # gone, or reaped between the two looks
    return state != "Z"
