"""The status reporter's logic against the broker port's in-repo fake (``edge.mqtt_fake``).

When it publishes (on every connect, every interval, on a poke), what it publishes and
what it does when the broker does not take it. The last will and the retained message a
newcomer finds are tested against Mosquitto in ``test_status.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from edge.mqtt_fake import FakeMqtt
from edge.status import StatusReporter
from plumbing.mqtt import MqttPublishTimeout
from wire import topics
from wire.models import Status, now_utc

SITE = "wh1"
GATEWAY = "gw-reporter"
TOPIC = topics.status(SITE, GATEWAY)


async def online() -> Status:
    return Status(gateway=GATEWAY, site=SITE, state="online", at=now_utc(), buffer_depth=3)


@contextlib.asynccontextmanager
async def running(reporter: StatusReporter) -> AsyncIterator[None]:
    task = asyncio.create_task(reporter.run(), name="status")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_publishes_retained_on_connect_every_interval_and_when_poked() -> None:
    broker = FakeMqtt(connected=False)
    reporter = StatusReporter(broker, site=SITE, gateway=GATEWAY, interval_s=60, snapshot=online)
    async with running(reporter):
        await asyncio.sleep(0.1)
        assert broker.published == []  # nothing while offline, and no error either
        await broker.connect()
        first = await broker.next_published()
        assert (first.topic, first.qos, first.retain) == (TOPIC, 1, True)
        status = Status.model_validate_json(first.payload)
        assert (status.state, status.buffer_depth) == ("online", 3)
        reporter.poke()
        await broker.next_published()
        assert reporter.published == 2
    fast = StatusReporter(broker, site=SITE, gateway=GATEWAY, interval_s=0.05, snapshot=online)
    async with running(fast):
        for _ in range(3):
            await broker.next_published()


async def test_a_status_the_broker_does_not_take_is_not_counted() -> None:
    broker = FakeMqtt()
    reporter = StatusReporter(broker, site=SITE, gateway=GATEWAY, interval_s=60, snapshot=online)
    broker.publish_error = MqttPublishTimeout("no PUBACK")
    assert not await reporter.publish_now()
    broker.publish_error = None
    broker.disconnect()
    assert not await reporter.publish_now()
    assert not await reporter.publish_offline()
    assert reporter.published == 0
    assert broker.refused == 3


async def test_offline_status_carries_the_config_version_running() -> None:
    broker = FakeMqtt()
    reporter = StatusReporter(
        broker,
        site=SITE,
        gateway=GATEWAY,
        interval_s=60,
        snapshot=online,
        config_version=lambda: 7,
    )
    assert await reporter.publish_offline()
    [taken] = broker.published_on(TOPIC)
    assert taken.retain
    status = Status.model_validate_json(taken.payload)
    assert (status.state, status.gateway, status.config_version) == ("offline", GATEWAY, 7)
