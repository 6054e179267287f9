"""Ingest: one MQTT events message in, one committed transaction and one Ack out.

``Ingestor.handle(topic, payload)`` knows nothing of MQTT: the composition root feeds it the
messages and gives it a publisher for Acks, so tests drive it directly or through a broker.

For each message:

1. The topic must be ``stockgate/v1/{site}/{gateway}/events``; the payload at most
   ``wire.models.MAX_PAYLOAD_BYTES``, JSON, and a valid ``BatchEnvelope`` whose site and
   gateway are the topic's. Otherwise the whole message is dead-lettered and not acked
   (there is nothing trustworthy to ack); it is never retried by the server.
2. Each event is validated on its own. An invalid event, or one naming a read point that is
   not configured (reason ``unknown read point``) or that belongs to another site, becomes
   one dead-letter row; its neighbours still apply.
3. One transaction: claim the event ids, apply the rules to the fresh ones, write ledger,
   balances, units, items, locations, alerts, dead letters and the batch record; commit.
4. Only then the Ack goes to ``stockgate/v1/{site}/{gateway}/ack``. A batch that was applied
   before (every id seen) is acked again: the edge re-sends when it lost the first Ack.

A database failure rolls the batch back and sends no Ack; transient ones (locks, deadlocks)
are retried ``[ingest] max_attempts`` times, then the edge's own re-send brings the batch
back later. Nothing here raises for bad input, so one bad message never stops the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from server.config import ReadPointSettings, ServerSettings
from server.dead_letters import DeadLetter, insert_dead_letters, printable
from server.errors import PublishFailed, StoreError, TransientStoreError
from server.ledger import Applied, apply_events
from server.metrics import Metrics
from server.payloads import (
    VALIDATION_ERRORS,
    PayloadError,
    control_characters,
    decode_json,
    describe,
)
from server.schema import MAX_EVENT_ID, batches
from server.store import Store
from server.views import AlertView
from wire import topics
from wire.models import Ack, AckedBatch, Alert, BatchEnvelope, Event, now_utc

log = logging.getLogger(__name__)

Publisher = Callable[[str, bytes], Awaitable[None]]
"""Publishes ``payload`` on ``topic`` with QoS 1; raises ``PublishFailed`` when it cannot."""
Outcome = Literal["applied", "duplicate", "rejected", "failed"]
RETRY_BASE_S = 0.05


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of one message.

    ``outcome`` is ``applied`` (committed, maybe with dead-lettered events), ``duplicate``
    (every event applied before), ``rejected`` (the whole message dead-lettered, no Ack) or
    ``failed`` (the database failed; no Ack, the edge will re-send).
    """

    outcome: Outcome
    batch_id: str | None = None
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    movements: int = 0
    acked: bool = False
    reason: str | None = None
    alerts: tuple[AlertView, ...] = ()


class Ingestor:
    """Applies event batches exactly once and acknowledges them after the commit.

    Args:
        store: the database.
        settings: read points and ``[ingest]`` knobs.
        publish: sends Acks and alerts (QoS 1).
        metrics: counters to update.
        clock: the recording time (UTC); tests may fix it.
    """

    def __init__(
        self,
        store: Store,
        settings: ServerSettings,
        publish: Publisher,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._store = store
        self._read_points: dict[str, ReadPointSettings] = settings.read_point_table()
        self._ingest = settings.ingest
        self._publish = publish
        self._metrics = metrics
        self._clock = clock

    async def handle(self, topic: str, payload: bytes) -> IngestResult:
        """Take one message from ``stockgate/v1/+/+/events``. Never raises for bad input."""
        started = time.perf_counter()
        try:
            result = await self._handle(topic, payload)
        finally:
            self._metrics.batch_seconds.observe(time.perf_counter() - started)
        self._metrics.batches.labels(outcome=result.outcome).inc()
        return result

    async def _handle(self, topic: str, payload: bytes) -> IngestResult:
        gateway: str | None = None
        try:
            site, gateway, kind = topics.parse_gateway_topic(topic)
            if kind != "events":
                raise PayloadError("topic", f"topic {topic!r} is not an events topic")
            envelope = self._envelope(payload)
            if envelope.site != site or envelope.gateway != gateway:
                raise PayloadError(
                    "mismatch",
                    f"batch says site {envelope.site!r} gateway {envelope.gateway!r} but was "
                    f"published on the topic of site {site!r} gateway {gateway!r}",
                )
        except topics.TopicError as err:
            return await self._reject(topic, payload, None, PayloadError("topic", str(err)))
        except PayloadError as err:
            return await self._reject(topic, payload, gateway, err)

        events, letters = self._split(topic, envelope)
        now = self._clock()
        applied = await self._commit(envelope, events, letters, now)
        if applied is None:
            return IngestResult(
                "failed", envelope.batch_id, reason="database failure; no Ack, edge re-sends"
            )
        self._metrics.events_applied.inc(applied.applied)
        self._metrics.events_duplicate.inc(applied.duplicates)
        acked = await self._ack(envelope)
        await self._publish_alerts(envelope.site, applied.alerts)
        duplicate = applied.applied == 0 and applied.duplicates > 0 and not letters
        return IngestResult(
            "duplicate" if duplicate else "applied",
            envelope.batch_id,
            applied=applied.applied,
            duplicates=applied.duplicates,
            dead_letters=len(letters),
            movements=applied.movements,
            acked=acked,
            alerts=tuple(applied.alerts),
        )

    @staticmethod
    def _envelope(payload: bytes) -> BatchEnvelope:
        data = decode_json(payload)
        try:
            return BatchEnvelope.model_validate(data)
        except VALIDATION_ERRORS as err:
            raise PayloadError("envelope", f"not a valid event batch: {describe(err)}") from err

    def _split(self, topic: str, envelope: BatchEnvelope) -> tuple[list[Event], list[DeadLetter]]:
        """Validate each event alone; the bad ones become dead letters."""
        events: list[Event] = []
        letters: list[DeadLetter] = []
        for raw in envelope.events:
            raw_id = raw.get("event_id")
            event_id = raw_id if isinstance(raw_id, str) else None
            try:
                event = Event.model_validate(raw)
            except VALIDATION_ERRORS as err:
                reason, kind = f"invalid event: {describe(err)}", "event"
            else:
                point = self._read_points.get(event.read_point)
                if control_characters(event.event_id) or control_characters(event.epc or ""):
                    # Identities are stored and compared verbatim; NUL cannot be stored.
                    reason, kind = (
                        "invalid event: event_id or epc holds control characters",
                        "event",
                    )
                elif point is None:
                    reason, kind = f"unknown read point {event.read_point!r}", "read_point"
                elif point.site is not None and point.site != envelope.site:
                    reason, kind = (
                        f"read point {event.read_point!r} belongs to site {point.site!r}, "
                        f"not {envelope.site!r}",
                        "read_point",
                    )
                else:
                    events.append(event)
                    continue
            self._metrics.dead_letters.labels(kind=kind).inc()
            log.warning("dead letter from %s: %s", envelope.gateway, reason)
            letters.append(
                DeadLetter(
                    topic=topic,
                    reason=reason,
                    payload=json.dumps(raw, default=str).encode(),
                    gateway=envelope.gateway,
                    event_id=event_id,
                )
            )
        return events, letters

    async def _commit(
        self,
        envelope: BatchEnvelope,
        events: list[Event],
        letters: list[DeadLetter],
        now: datetime,
    ) -> Applied | None:
        attempts = self._ingest.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                async with self._store.begin(f"applying batch {envelope.batch_id}") as conn:
                    applied = await apply_events(
                        conn,
                        events,
                        self._read_points,
                        known_locations=self._store.known_locations,
                        actor=envelope.gateway,
                        site=envelope.site,
                        now=now,
                    )
                    await insert_dead_letters(
                        conn, letters, now, self._ingest.dead_letter_payload_bytes
                    )
                    await conn.execute(
                        batches.insert().values(
                            batch_id=printable(envelope.batch_id, MAX_EVENT_ID),
                            site=envelope.site,
                            gateway=envelope.gateway,
                            epoch=envelope.epoch,
                            seq_first=envelope.seq_first,
                            seq_last=envelope.seq_last,
                            events=len(envelope.events),
                            applied=applied.applied,
                            duplicates=applied.duplicates,
                            dead_letters=len(letters),
                            received_at=now,
                        )
                    )
            except TransientStoreError as err:
                if attempt == attempts:
                    log.error(
                        "batch %s not applied after %d tries: %s", envelope.batch_id, attempts, err
                    )
                    return None
                log.warning("batch %s: %s; retrying", envelope.batch_id, err)
                await asyncio.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
                continue
            except StoreError as err:
                log.error("batch %s not applied: %s", envelope.batch_id, err)
                return None
            # Only after the commit: a rolled-back location insert must not be cached.
            self._store.known_locations.update(applied.new_locations)
            return applied
        return None

    async def _ack(self, envelope: BatchEnvelope) -> bool:
        ack = Ack(
            gateway=envelope.gateway,
            batches=[
                AckedBatch(
                    batch_id=envelope.batch_id,
                    epoch=envelope.epoch,
                    seq_first=envelope.seq_first,
                    seq_last=envelope.seq_last,
                )
            ],
        )
        try:
            await self._publish(
                topics.ack(envelope.site, envelope.gateway), ack.model_dump_json().encode()
            )
        except PublishFailed as err:
            # Committed already; the edge re-sends and gets a duplicate's Ack then.
            self._metrics.acks_failed.inc()
            log.warning("ack of batch %s not sent: %s", envelope.batch_id, err)
            return False
        return True

    async def _publish_alerts(self, site: str, opened: list[AlertView]) -> None:
        for alert in opened:
            message = Alert(
                id=alert.id,
                kind=alert.kind,
                severity=alert.severity,
                subject=alert.subject,
                message=alert.message,
                opened_at=alert.opened_at,
                site=site,
                evidence=alert.evidence,
            )
            try:
                await self._publish(topics.alerts(site), message.model_dump_json().encode())
            except PublishFailed as err:
                log.warning("alert %d not published: %s", alert.id, err)

    async def _reject(
        self, topic: str, payload: bytes, gateway: str | None, err: PayloadError
    ) -> IngestResult:
        self._metrics.dead_letters.labels(kind=err.kind).inc()
        log.warning("dead letter on %r: %s", topic[:200], err.reason)
        letter = DeadLetter(topic=topic, reason=err.reason, payload=payload, gateway=gateway)
        try:
            async with self._store.begin("recording a dead letter") as conn:
                await insert_dead_letters(
                    conn, [letter], self._clock(), self._ingest.dead_letter_payload_bytes
                )
        except StoreError as store_err:
            log.error("dead letter not stored (%s): %s", store_err, err.reason)
        return IngestResult("rejected", dead_letters=1, reason=err.reason)
