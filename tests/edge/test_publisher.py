"""The publisher against a real Mosquitto, with the test acting as the server.

The edge reaches the broker through the ``relay`` fixture (a TCP relay on loopback), so a
test can cut the edge's link (a WAN outage) while the "server" stays subscribed on the
broker directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edge.buffer.outbox import Outbox
from edge.publisher import Publisher, batch_id
from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from tests.edge.support import ack_of, eventually, shipped_event
from wire import topics
from wire.models import Ack, AckedBatch, EventBatch

pytestmark = pytest.mark.broker

SITE = "wh1"
GATEWAY = "gw-pub"
EVENTS = topics.events(SITE, GATEWAY)
ACKS = topics.ack(SITE, GATEWAY)


class Server:
    """The test's stand-in for the stockgate server: collects batches, sends Acks."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.batches: asyncio.Queue[EventBatch] = asyncio.Queue()

    async def run(self) -> None:
        async for message in self.client.messages():
            if message.topic == EVENTS:
                await self.batches.put(EventBatch.model_validate_json(message.payload))

    async def next(self, timeout: float = 10.0) -> EventBatch:
        return await asyncio.wait_for(self.batches.get(), timeout)

    async def nothing_for(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            batch = await asyncio.wait_for(self.batches.get(), seconds)
            raise AssertionError(f"unexpected batch {batch.batch_id}")

    async def ack(self, *batches: EventBatch) -> None:
        await self.client.publish(ACKS, ack_of(GATEWAY, *batches), qos=1)


class Rig:
    outbox: Outbox
    publisher: Publisher
    server: Server
    relay: Any
    edge: MqttClient

    async def cut_link(self) -> None:
        """Cut the edge's link to the broker and refuse it until ``relay.open`` again."""
        # A link still being made when the relay closes would come up after the cut.
        await self.edge.wait_connected(10)
        self.relay.open = False
        self.relay.cut()
        await eventually(lambda: not self.edge.connected)


RigFactory = Callable[..., contextlib.AbstractAsyncContextManager[Rig]]


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Any, relay: Any) -> RigFactory:
    """``rig(events=..., **publisher_args)``: see ``rigged``."""
    return functools.partial(rigged, tmp_path, mosquitto, relay)


@contextlib.asynccontextmanager
async def rigged(
    tmp_path: Path, broker: Any, relay: Any, *, events: int = 0, **publisher_args: Any
) -> AsyncIterator[Rig]:
    """Outbox with ``events`` committed, edge client via the relay, server on the broker."""
    setup = Rig()
    async with (
        Outbox.open(tmp_path / "outbox.db", GATEWAY, commit_interval_ms=20) as outbox,
        MqttClient(MqttSettings(url=relay.url), f"edge-{tmp_path.name}"[:60]) as edge,
        MqttClient(MqttSettings(url=broker.url), f"srv-{tmp_path.name}"[:60]) as server_client,
    ):
        for _ in range(events):
            outbox.append(shipped_event)
        await outbox.flush()
        await server_client.wait_connected(10)
        await server_client.subscribe(EVENTS)
        setup.outbox, setup.relay, setup.edge = outbox, relay, edge
        setup.server = Server(server_client)
        setup.publisher = Publisher(outbox, edge, site=SITE, gateway=GATEWAY, **publisher_args)
        tasks = [
            asyncio.create_task(setup.publisher.run(), name="publisher"),
            asyncio.create_task(setup.server.run(), name="server"),
        ]
        try:
            yield setup
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_batches_not_messages_per_event_and_delete_only_on_ack(rig: RigFactory) -> None:
    async with rig(events=250, batch_size=100, max_in_flight=2, resend_after_s=60) as r:
        first, second = await r.server.next(), await r.server.next()
        assert [len(first.events), len(second.events)] == [100, 100]
        assert (first.seq_first, first.seq_last) == (1, 100)
        assert (second.seq_first, second.seq_last) == (101, 200)
        assert first.batch_id == batch_id(GATEWAY, r.outbox.epoch, 1, 100)
        assert (first.site, first.gateway, first.epoch) == (SITE, GATEWAY, r.outbox.epoch)
        assert [e.event_id for e in first.events] == [
            f"{GATEWAY}:{r.outbox.epoch}:{n}" for n in range(1, 101)
        ]
        # Both publishes got their PUBACK; the in-flight window is full; nothing deleted.
        await eventually(lambda: r.publisher.batches_sent == 2)
        await r.server.nothing_for(0.5)
        assert r.outbox.depth() == 250

        await r.server.ack(first)
        await eventually(lambda: r.outbox.depth() == 150)
        third = await r.server.next()  # the window moved on
        assert (third.seq_first, third.seq_last, len(third.events)) == (201, 250, 50)
        remaining = await r.outbox.next_batch(0, 1000)
        assert remaining[0][0] == 101

        await r.server.ack(second, third)
        await eventually(lambda: r.outbox.depth() == 0)
        assert r.publisher.in_flight == 0
        assert r.publisher.batches_acked == 3

        # New events go out as they are committed.
        for _ in range(3):
            r.outbox.append(shipped_event)
        fourth = await r.server.next()
        assert (fourth.seq_first, fourth.seq_last) == (251, 253)


async def test_lost_ack_means_same_batch_again_after_resend_time(rig: RigFactory) -> None:
    async with rig(events=5, batch_size=100, max_in_flight=1, resend_after_s=0.5) as r:
        first = await r.server.next()
        # The server commits it but its Ack is lost: no Ack is published.
        again = await r.server.next(timeout=5)
        assert again.batch_id == first.batch_id
        assert again.events == first.events
        assert r.outbox.depth() == 5
        await r.server.ack(again)
        await eventually(lambda: r.outbox.depth() == 0)
        # Acknowledged: no more re-sends.
        await r.server.nothing_for(1.2)
        assert r.publisher.batches_resent >= 1


async def test_a_batch_without_an_ack_is_resent_ever_less_often(rig: RigFactory) -> None:
    """No resend storm: each re-send of an unacknowledged batch waits at least 3/4 of twice
    the previous wait (capped), so a batch the server never acks costs a bounded number of
    messages however long it waits."""
    base, cap, window = 0.3, 1.2, 4.0
    async with rig(
        events=5,
        batch_size=100,
        max_in_flight=1,
        resend_after_s=base,
        resend_max_s=cap,
    ) as r:
        arrivals: list[float] = []
        end = time.monotonic() + window
        with contextlib.suppress(TimeoutError):
            while (left := end - time.monotonic()) > 0:
                batch = await r.server.next(timeout=left)
                arrivals.append(time.monotonic())
                assert batch.seq_first == 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 3, arrivals
    # Lower bounds only (a loaded machine is late, never early); 0.05 s for delivery jitter.
    assert gaps[0] >= base - 0.05
    for sends, gap in enumerate(gaps[1:], start=2):
        assert gap >= 0.75 * min(cap, base * 2 ** (sends - 1)) - 0.05, gaps
    # A flat 0.3 s resend would have sent 13 times in the window; the backoff allows 6.
    assert len(arrivals) <= 6


async def test_acks_for_other_epochs_and_gateways_delete_nothing(rig: RigFactory) -> None:
    async with rig(events=5, batch_size=100, max_in_flight=1, resend_after_s=60) as r:
        batch = await r.server.next()
        other_epoch = batch.model_copy(update={"epoch": "00000000aaaaaaaa"})
        await r.server.ack(other_epoch)
        wrong_gateway = Ack(
            gateway="gw-other",
            batches=[
                AckedBatch(batch_id=batch.batch_id, epoch=batch.epoch, seq_first=1, seq_last=5)
            ],
        )
        await r.server.client.publish(ACKS, wrong_gateway.model_dump_json().encode())
        await r.server.client.publish(ACKS, b'{"not": "an ack"}')
        await eventually(lambda: r.publisher.bad_acks == 2)
        assert r.outbox.depth() == 5
        assert r.publisher.in_flight == 1


async def test_reconnect_resends_unacked_in_order(rig: RigFactory) -> None:
    async with rig(events=30, batch_size=10, max_in_flight=3, resend_after_s=60) as r:
        sent = [await r.server.next() for _ in range(3)]
        await eventually(lambda: r.publisher.batches_sent == 3)
        await r.cut_link()
        # Acks published now never reach the edge (its session is gone with the link).
        await r.server.ack(sent[0])
        await asyncio.sleep(0.2)
        r.relay.open = True
        # resend_after_s is 60: anything arriving now was sent because of the reconnect.
        again = [await r.server.next(timeout=15) for _ in range(3)]
        assert [b.batch_id for b in again] == [b.batch_id for b in sent]
        assert r.outbox.depth() == 30
        await r.server.ack(*again)
        await eventually(lambda: r.outbox.depth() == 0)


async def test_broker_unreachable_keeps_events_without_spinning(rig: RigFactory) -> None:
    async with rig(batch_size=50, max_in_flight=2, resend_after_s=60) as r:
        await r.cut_link()
        rounds = r.publisher.rounds
        for _ in range(120):
            r.outbox.append(shipped_event)
            await asyncio.sleep(0.005)
        await r.outbox.flush()
        await asyncio.sleep(0.5)
        assert r.outbox.depth() == 120
        assert r.publisher.batches_sent == 0
        # Waiting for the link, not polling it: a handful of rounds at most.
        assert r.publisher.rounds - rounds <= 3
        r.relay.open = True
        got = [await r.server.next(timeout=20) for _ in range(2)]
        assert [(b.seq_first, b.seq_last) for b in got] == [(1, 50), (51, 100)]
        await r.server.ack(*got)
        last = await r.server.next()
        assert (last.seq_first, last.seq_last) == (101, 120)
        await r.server.ack(last)
        await eventually(lambda: r.outbox.depth() == 0)


async def test_publisher_resumes_after_restart_from_outbox(rig: RigFactory) -> None:
    async with rig(events=4, batch_size=10, max_in_flight=1, resend_after_s=60) as r:
        first = await r.server.next()
        epoch = r.outbox.epoch
    # A new process: same outbox, nothing acknowledged yet, so the same range goes again.
    async with rig(batch_size=10, max_in_flight=1, resend_after_s=60) as r:
        assert r.outbox.epoch == epoch
        again = await r.server.next()
        assert again.batch_id == first.batch_id
        await r.server.ack(again)
        await eventually(lambda: r.outbox.depth() == 0)
