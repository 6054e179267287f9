"""Drains the outbox to the broker in batches; deletes only what the server acknowledged.

The publisher keeps up to ``max_in_flight`` batches sent and not yet acknowledged. Each
batch is a contiguous range of the outbox sequence (at most ``batch_size`` events and
``MAX_PAYLOAD_BYTES``), published as an ``EventBatch`` with QoS 1 on the gateway's events
topic. Its id, ``{gateway}:{epoch}:{seq_first}-{seq_last}``, is stable: a re-send carries
the same id and the same events, so the server can skip what it already has.

Deletion happens on the server's ``Ack`` only. The broker's PUBACK says the broker has
the message, not that the server committed it (docs/architecture.md §4), so it only ends the
wait of ``publish``. A batch with no Ack after ``resend_after_s`` is sent again, and after
every reconnect all unacknowledged batches are sent again, oldest first, because Acks
published while the link was down are gone. Each further re-send of a batch that still
gets no Ack waits twice as long as the one before, up to ``resend_max_s``, scaled by a
random factor in [0.75, 1]: a server that is down, or that dead-letters a batch and
cannot ack it, is not sent the same batches every ``resend_after_s`` for ever, and the
gateways of a site do not re-send in step.

With the broker down nothing is lost and nothing spins: events pile up in the outbox,
the send loop waits for the connection, and the in-flight window refills once it is back.

Drain rate. Everything sent (first sends and re-sends) goes through a token bucket of
``drain_rate_per_s`` events per second (bursts of one batch or one second's worth), so
after an outage the backlog drains in order at a bounded pace instead of flooding the
broker and the server, which may be taking the backlog of many gateways at once. Live
traffic (a busy portal makes a few hundred events a minute) never meets the limit.

An Ack may list events of its batches that the server refused (negative stock where a site
refuses it): they are dead letters there, so they leave the outbox with their batch; the
publisher logs each and hands it to ``on_refused`` (the agent shows it on the scanner).

The publisher is the one consumer of the client's ``messages()``; it acts on its Ack
topic and hands anything else to ``on_other`` (the agent's remote configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError

from edge.buffer.outbox import Outbox, OutboxError
from edge.mqtt_port import MqttPort
from edge.ratelimit import TokenBucket
from plumbing.mqtt import Message, MqttError, MqttNotConnected
from wire import topics
from wire.models import (
    MAX_BATCH_EVENTS,
    MAX_PAYLOAD_BYTES,
    Ack,
    BatchHeader,
    RefusedEvent,
    now_utc,
)

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S: Final = 10.0
"""Longest wait for a PUBACK before the publish counts as failed (and is retried)."""
RETRY_PAUSE_S: Final = 0.5
"""Pause after a failed publish or outbox read, so a persistent fault never spins."""
HEADER_ALLOWANCE: Final = 1024
"""Bytes kept free in a payload for the batch header and brackets."""
_EVENTS_KEY: Final = b',"events":['


@dataclass(slots=True)
class InFlight:
    """A batch sent (or due to be sent) and not yet acknowledged."""

    batch_id: str
    seq_first: int
    seq_last: int
    bodies: list[str]
    sent_at: float | None = None
    """Monotonic time of the last successful publish; None means send it now."""
    sends: int = 0
    resend_in: float = 0.0
    """How long after ``sent_at`` it goes again (doubling with each send)."""


def batch_id(gateway: str, epoch: str, seq_first: int, seq_last: int) -> str:
    """The stable id of the batch covering ``seq_first..seq_last`` of an outbox epoch."""
    return f"{gateway}:{epoch}:{seq_first}-{seq_last}"


class Publisher:
    """Moves committed events from the outbox to the broker and acknowledged ones out.

    Args:
        outbox: the open outbox.
        client: the broker link (``edge.mqtt_port``; the agent's MQTT client, whose own
            task connects and reconnects).
        site: this gateway's site id.
        gateway: this gateway's id.
        batch_size: most events per message (1..MAX_BATCH_EVENTS).
        max_in_flight: most batches sent and not acknowledged.
        resend_after_s: send a batch again when its Ack has not come by then.
        resend_max_s: the longest wait between two re-sends of one batch (backoff cap).
        drain_rate_per_s: most events per second sent; 0 is no limit.
        on_other: takes every message that is not on the Ack topic (the gateway's
            config topic); None drops them.
    """

    def __init__(
        self,
        outbox: Outbox,
        client: MqttPort,
        *,
        site: str,
        gateway: str,
        batch_size: int = 500,
        max_in_flight: int = 8,
        resend_after_s: float = 10.0,
        resend_max_s: float = 300.0,
        drain_rate_per_s: float = 0.0,
        on_other: Callable[[Message], Awaitable[None]] | None = None,
        on_refused: Callable[[RefusedEvent], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_EVENTS}, got {batch_size}")
        if max_in_flight < 1 or resend_after_s <= 0:
            raise ValueError("max_in_flight must be >= 1 and resend_after_s > 0")
        self._outbox = outbox
        self._client = client
        self._on_refused = on_refused
        self.site = site
        self.gateway = gateway
        self.events_topic = topics.events(site, gateway)
        self.ack_topic = topics.ack(site, gateway)
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._resend_after_s = resend_after_s
        self._resend_max_s = max(resend_max_s, resend_after_s)
        self._in_flight: dict[str, InFlight] = {}
        self._on_other = on_other
        self._bucket = (
            TokenBucket(drain_rate_per_s, max(drain_rate_per_s, batch_size))
            if drain_rate_per_s > 0
            else None
        )
        self.throttled_s = 0.0
        """Time the send loop waited for the drain rate so far."""
        self._high_seq = 0
        """Highest outbox sequence number taken into a batch by this process."""
        self._wake = asyncio.Event()
        self.batches_sent = 0
        self.batches_resent = 0
        self.batches_acked = 0
        self.events_acked = 0
        self.bad_acks = 0
        self.events_refused = 0
        """Events the server's Acks said it refused (kept there as dead letters)."""
        self.rounds = 0
        """Passes of the send loop; stays small while the broker is away (no busy loop)."""

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet acknowledged."""
        return len(self._in_flight)

    async def run(self) -> None:
        """Publish and process Acks until cancelled."""
        self._outbox.on_commit(self._wake.set)
        self._client.on_connect(self._on_connect)
        try:
            await self._client.subscribe(self.ack_topic, qos=1)
        except (MqttError, TimeoutError) as err:
            # The subscription is recorded and made again on the next connect.
            log.warning("publisher: subscribing to %s failed for now: %s", self.ack_topic, err)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._receive_acks(), name="publisher-acks")
            tasks.create_task(self._send_loop(), name="publisher-send")

    async def _on_connect(self) -> None:
        # Acks sent while the link was down are lost: everything unacknowledged goes again.
        for batch in self._in_flight.values():
            batch.sent_at = None
        self._wake.set()

    # -- sending ----------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            self.rounds += 1
            self._wake.clear()
            if not self._client.connected:
                await self._client.wait_connected()
                continue
            try:
                await self._send_due()
                await self._fill()
            except MqttNotConnected as err:
                log.info("publisher: broker link down (%s); waiting for it", err)
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            except (MqttError, OutboxError) as err:
                log.warning("publisher: %s; retrying in %.1fs", err, RETRY_PAUSE_S)
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._until_next_resend()):
                    await self._wake.wait()

    def _until_next_resend(self) -> float | None:
        due = [
            batch.sent_at + batch.resend_in
            for batch in self._in_flight.values()
            if batch.sent_at is not None
        ]
        if not due:
            return None
        return max(0.0, min(due) - time.monotonic())

    def resend_delay(self, sends: int) -> float:
        """How long after its ``sends``-th send a batch without an Ack goes again."""
        if sends <= 1:
            return self._resend_after_s
        doubled = self._resend_after_s * 2.0 ** min(sends - 1, 32)
        jitter: float = random.uniform(0.75, 1.0)
        return min(self._resend_max_s, doubled) * jitter

    async def _send_due(self) -> None:
        now = time.monotonic()
        # Insertion order is sequence order, so re-sends go oldest first.
        for batch in list(self._in_flight.values()):
            if batch.batch_id not in self._in_flight:
                continue  # acknowledged while an earlier batch was being sent
            if batch.sent_at is None or now - batch.sent_at >= batch.resend_in:
                await self._send(batch)

    async def _fill(self) -> None:
        while len(self._in_flight) < self._max_in_flight:
            rows = await self._outbox.next_batch(self._high_seq, self._batch_size)
            if not rows:
                return
            rows = fit_batch(rows)
            seq_first, seq_last = rows[0][0], rows[-1][0]
            batch = InFlight(
                batch_id=batch_id(self.gateway, self._outbox.epoch, seq_first, seq_last),
                seq_first=seq_first,
                seq_last=seq_last,
                bodies=[body for _, body in rows],
            )
            self._in_flight[batch.batch_id] = batch
            self._high_seq = seq_last
            await self._send(batch)

    async def _send(self, batch: InFlight) -> None:
        if self._bucket is not None:
            self.throttled_s += await self._bucket.acquire(len(batch.bodies))
        payload = self._payload(batch)
        await self._client.publish(
            self.events_topic, payload, qos=1, retain=False, timeout=PUBLISH_TIMEOUT_S
        )
        if batch.sends:
            self.batches_resent += 1
            log.info("publisher: re-sent batch %s (send %d)", batch.batch_id, batch.sends + 1)
        else:
            self.batches_sent += 1
        batch.sends += 1
        batch.sent_at = time.monotonic()
        batch.resend_in = self.resend_delay(batch.sends)

    def _payload(self, batch: InFlight) -> bytes:
        header = BatchHeader(
            batch_id=batch.batch_id,
            site=self.site,
            gateway=self.gateway,
            epoch=self._outbox.epoch,
            seq_first=batch.seq_first,
            seq_last=batch.seq_last,
            sent_at=now_utc(),
        ).model_dump_json()
        # The events are stored as the JSON of validated Events; splice them in as they
        # are instead of parsing and re-serialising up to a thousand models per message.
        # The result is exactly the JSON of an EventBatch.
        return b"".join(
            (
                header[:-1].encode(),
                _EVENTS_KEY,
                ",".join(batch.bodies).encode(),
                b"]}",
            )
        )

    # -- acknowledgements -------------------------------------------------------------

    async def _receive_acks(self) -> None:
        async for message in self._client.messages():
            if message.topic != self.ack_topic:
                if self._on_other is not None:
                    await self._on_other(message)
                continue
            if len(message.payload) > MAX_PAYLOAD_BYTES:
                self.bad_acks += 1
                log.warning("publisher: Ack of %d bytes refused", len(message.payload))
                continue
            try:
                ack = Ack.model_validate_json(message.payload)
            except ValidationError as err:
                self.bad_acks += 1
                log.warning("publisher: invalid Ack on %s: %s", message.topic, err)
                continue
            if ack.gateway != self.gateway:
                self.bad_acks += 1
                log.warning("publisher: Ack for gateway %r on our topic ignored", ack.gateway)
                continue
            self._refusals(ack)
            await self._apply(ack)
            self._wake.set()

    def _refusals(self, ack: Ack) -> None:
        # Applied as dead letters on the server, so deleted with the batch all the same.
        for refused in ack.refused:
            self.events_refused += 1
            log.warning(
                "publisher: server refused event %s of %s: %s",
                refused.event_id,
                refused.read_point,
                refused.reason,
            )
            if self._on_refused is not None:
                self._on_refused(refused)
        if ack.refused_more:
            self.events_refused += ack.refused_more
            log.warning("publisher: server refused %d more events", ack.refused_more)

    async def _apply(self, ack: Ack) -> None:
        for acked in ack.batches:
            if acked.epoch != self._outbox.epoch:
                log.info("publisher: Ack of batch %s from another epoch ignored", acked.batch_id)
                continue
            try:
                deleted = await self._outbox.ack(acked.epoch, acked.seq_first, acked.seq_last)
            except OutboxError as err:
                # Kept in flight: it is sent again and the server acknowledges it again.
                log.error("publisher: %s", err)
                continue
            self.events_acked += deleted
            batch = self._in_flight.get(acked.batch_id)
            if batch is None:
                continue  # a repeat, or a batch of an earlier run of this outbox
            if (batch.seq_first, batch.seq_last) != (acked.seq_first, acked.seq_last):
                log.warning(
                    "publisher: Ack of %s names range %d-%d, we sent %d-%d; sending it again",
                    acked.batch_id,
                    acked.seq_first,
                    acked.seq_last,
                    batch.seq_first,
                    batch.seq_last,
                )
                continue
            del self._in_flight[acked.batch_id]
            self.batches_acked += 1


def fit_batch(rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The longest prefix of ``rows`` (at least one) whose batch fits MAX_PAYLOAD_BYTES.

    A thousand events of the largest kind (long read points, 496-bit EPCs) exceed the
    payload limit both sides enforce, so ``batch_size`` alone is not a bound on bytes.
    """
    budget = MAX_PAYLOAD_BYTES - HEADER_ALLOWANCE
    for index, (_, body) in enumerate(rows):
        budget -= len(body.encode()) + 1
        if budget < 0:
            return rows[: max(1, index)]
    return rows
