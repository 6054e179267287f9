"""The publisher's logic against the broker port's in-repo fake (``edge.mqtt_fake``).

The outbox is the real one; only the broker link is faked, so a test can fail a publish,
drop the link, and play the server's Acks without timing a real broker. What the broker
itself does (sessions, a cut TCP link, QoS 1 redelivery) is tested against Mosquitto in
``test_publisher.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.buffer.outbox import Outbox
from edge.mqtt_fake import FakeMqtt
from edge.publisher import RETRY_PAUSE_S, Publisher
from plumbing.mqtt import Message, MqttPublishTimeout
from tests.edge.support import ack_of, eventually, shipped_event
from wire import topics
from wire.models import MAX_PAYLOAD_BYTES, Ack, AckedBatch, EventBatch, RefusedEvent

SITE = "wh1"
GATEWAY = "gw-logic"
EVENTS = topics.events(SITE, GATEWAY)
ACKS = topics.ack(SITE, GATEWAY)
CONFIG = topics.config(SITE, GATEWAY)


@dataclass
class Rig:
    outbox: Outbox
    broker: FakeMqtt
    publisher: Publisher
    refused: list[RefusedEvent] = field(default_factory=list)
    other: list[Message] = field(default_factory=list)

    async def next_batch(self, timeout: float = 10.0) -> EventBatch:
        published = await self.broker.next_published(timeout)
        assert (published.topic, published.qos, published.retain) == (EVENTS, 1, False)
        return EventBatch.model_validate_json(published.payload)

    def ack(self, *batches: EventBatch, refused: list[RefusedEvent] | None = None) -> None:
        self.broker.deliver(ACKS, ack_of(GATEWAY, *batches, refused=refused or []))


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, *, events: int = 0, connected: bool = True, **publisher_args: Any
) -> AsyncIterator[Rig]:
    broker = FakeMqtt(connected=connected)
    async with Outbox.open(tmp_path / "outbox.db", GATEWAY, commit_interval_ms=20) as outbox:
        for _ in range(events):
            outbox.append(shipped_event)
        await outbox.flush()
        refused: list[RefusedEvent] = []
        other: list[Message] = []

        async def on_other(message: Message) -> None:
            other.append(message)

        publisher = Publisher(
            outbox,
            broker,
            site=SITE,
            gateway=GATEWAY,
            on_other=on_other,
            on_refused=refused.append,
            **publisher_args,
        )
        task = asyncio.create_task(publisher.run(), name="publisher")
        try:
            yield Rig(outbox, broker, publisher, refused, other)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_subscribes_to_its_acks_and_deletes_only_what_an_ack_names(tmp_path: Path) -> None:
    async with rig(tmp_path, events=25, batch_size=10, max_in_flight=2, resend_after_s=60) as r:
        first, second = await r.next_batch(), await r.next_batch()
        assert r.broker.subscriptions == {ACKS: 1}
        assert [(b.seq_first, b.seq_last) for b in (first, second)] == [(1, 10), (11, 20)]
        with contextlib.suppress(TimeoutError):
            extra = await r.broker.next_published(0.3)
            raise AssertionError(f"the window is full, yet {extra.topic} was published")
        assert r.outbox.depth() == 25
        r.ack(second)  # out of order: the second batch only
        await eventually(lambda: r.outbox.depth() == 15)
        third = await r.next_batch()
        assert (third.seq_first, third.seq_last) == (21, 25)
        assert r.publisher.in_flight == 2
        r.ack(first, third)
        await eventually(lambda: r.outbox.depth() == 0)
        assert (r.publisher.batches_sent, r.publisher.batches_acked) == (3, 3)
        assert r.publisher.events_acked == 25


async def test_a_failed_publish_keeps_the_batch_and_is_tried_again(tmp_path: Path) -> None:
    async with rig(tmp_path, events=3, batch_size=10, max_in_flight=1, resend_after_s=60) as r:
        r.broker.publish_error = MqttPublishTimeout("no PUBACK")
        await eventually(lambda: r.broker.refused >= 2)  # tried again after RETRY_PAUSE_S
        assert r.broker.published == []
        assert r.publisher.batches_sent == 0
        r.broker.publish_error = None
        batch = await r.next_batch(timeout=RETRY_PAUSE_S * 4)
        assert (batch.seq_first, batch.seq_last) == (1, 3)
        assert r.publisher.batches_sent == 1
        assert r.outbox.depth() == 3


async def test_offline_nothing_is_sent_and_a_reconnect_resends_every_unacked_batch(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, events=20, batch_size=10, max_in_flight=2, resend_after_s=60) as r:
        sent = [await r.next_batch(), await r.next_batch()]
        r.broker.disconnect()
        rounds = r.publisher.rounds
        r.outbox.append(shipped_event)
        await r.outbox.flush()
        await asyncio.sleep(0.3)
        assert len(r.broker.published) == 2
        assert r.publisher.rounds - rounds <= 3  # waits for the link, does not spin
        await r.broker.connect()
        # resend_after_s is 60: these went again because of the reconnect, oldest first.
        again = [await r.next_batch(), await r.next_batch()]
        assert [b.batch_id for b in again] == [b.batch_id for b in sent]
        assert r.publisher.batches_resent == 2
        r.ack(*again)
        last = await r.next_batch()
        assert (last.seq_first, last.seq_last) == (21, 21)


async def test_refused_events_leave_with_their_batch_and_are_handed_on(tmp_path: Path) -> None:
    async with rig(tmp_path, events=2, batch_size=10, max_in_flight=1, resend_after_s=60) as r:
        batch = await r.next_batch()
        refusal = RefusedEvent(
            event_id=batch.events[1].event_id,
            read_point="wh1.dock.1",
            reason="negative stock refused at wh1",
        )
        r.ack(batch, refused=[refusal])
        await eventually(lambda: r.outbox.depth() == 0)
        assert r.refused == [refusal]
        assert r.publisher.events_refused == 1


async def test_bad_acks_and_other_epochs_delete_nothing(tmp_path: Path) -> None:
    async with rig(tmp_path, events=5, batch_size=10, max_in_flight=1, resend_after_s=60) as r:
        batch = await r.next_batch()
        r.broker.deliver(ACKS, b'{"not": "an ack"}')
        r.broker.deliver(ACKS, b" " * (MAX_PAYLOAD_BYTES + 1))
        other_gateway = Ack(
            gateway="gw-other",
            batches=[
                AckedBatch(batch_id=batch.batch_id, epoch=batch.epoch, seq_first=1, seq_last=5)
            ],
        )
        r.broker.deliver(ACKS, other_gateway.model_dump_json().encode())
        await eventually(lambda: r.publisher.bad_acks == 3)
        r.ack(batch.model_copy(update={"epoch": "00000000aaaaaaaa"}))  # an earlier disk's
        await asyncio.sleep(0.2)
        assert r.outbox.depth() == 5
        assert r.publisher.in_flight == 1


async def test_an_ack_of_another_range_deletes_it_and_keeps_the_batch(tmp_path: Path) -> None:
    async with rig(tmp_path, events=5, batch_size=10, max_in_flight=1, resend_after_s=60) as r:
        batch = await r.next_batch()
        r.ack(batch.model_copy(update={"seq_last": 4}))
        # The server committed what it names; the batch as sent waits for its own Ack.
        await eventually(lambda: r.outbox.depth() == 1)
        assert r.publisher.in_flight == 1
        assert r.publisher.batches_acked == 0
        r.ack(batch)
        await eventually(lambda: r.publisher.in_flight == 0)
        assert r.outbox.depth() == 0


async def test_other_messages_go_to_on_other(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.broker.deliver(CONFIG, b"{}", retain=True)
        await eventually(lambda: len(r.other) == 1)
        assert r.other == [Message(CONFIG, b"{}", True)]
        assert r.publisher.bad_acks == 0
