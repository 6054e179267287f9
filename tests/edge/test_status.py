"""Retained gateway status and the last will, against a real Mosquitto."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edge.rates import RateMeter
from edge.status import StatusReporter, last_will, offline_status
from plumbing.mqtt import Message, MqttClient
from plumbing.settings import MqttSettings
from wire import topics
from wire.models import ReaderStatus, Status, now_utc

SITE = "wh1"
GATEWAY = "gw-status"
TOPIC = topics.status(SITE, GATEWAY)


async def next_message(client: MqttClient, timeout: float = 10.0) -> Message:
    async def first() -> Message:
        async for message in client.messages():
            return message
        raise AssertionError("message stream ended")

    return await asyncio.wait_for(first(), timeout)


async def retained_status(url: str, name: str) -> Status:
    """What a newcomer finds on the status topic."""
    async with MqttClient(MqttSettings(url=url), name) as watcher:
        await watcher.wait_connected(10)
        await watcher.subscribe(TOPIC)
        message = await next_message(watcher)
    assert message.retain
    return Status.model_validate_json(message.payload)


def test_last_will_is_retained_offline_status() -> None:
    will = last_will(SITE, GATEWAY)
    assert will.topic == TOPIC
    assert will.retain
    assert will.qos == 1
    status = Status.model_validate_json(will.payload)
    assert (status.state, status.gateway, status.site) == ("offline", GATEWAY, SITE)
    assert offline_status(SITE, GATEWAY).state == "offline"


def test_rate_meter() -> None:
    meter = RateMeter(now=100.0)
    assert meter.rate(50, 102.0) == 25.0
    assert meter.rate(50, 103.0) == 0.0
    assert meter.rate(10, 104.0) == 0.0  # a counter reset is not a negative rate
    assert meter.rate(20, 104.0) == 0.0  # no time passed


async def online(readers: int = 1) -> Status:
    return Status(
        gateway=GATEWAY,
        site=SITE,
        state="online",
        at=now_utc(),
        readers=[
            ReaderStatus(name=f"r{n}", kind="llrp", state="connected") for n in range(readers)
        ],
        buffer_depth=7,
        oldest_unacked_age_s=1.5,
        reads_per_s=12.0,
    )


@pytest.mark.broker
async def test_will_marks_gateway_offline_when_link_dies(mosquitto: Any, relay: Any) -> None:
    async with MqttClient(
        MqttSettings(url=relay.url), "edge-will", will=last_will(SITE, GATEWAY)
    ) as edge:
        await edge.wait_connected(10)
        reporter = StatusReporter(edge, site=SITE, gateway=GATEWAY, interval_s=60, snapshot=online)
        assert await reporter.publish_now()
        found = await retained_status(mosquitto.url, "watch-1")
        assert (found.state, found.buffer_depth, found.readers[0].name) == ("online", 7, "r0")
        relay.open = False
        relay.cut()  # no DISCONNECT packet: the broker sends the will
        for _ in range(200):
            if (await retained_status(mosquitto.url, "watch-2")).state == "offline":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the will never replaced the online status")


@pytest.mark.broker
async def test_reporter_publishes_on_connect_interval_and_offline(
    mosquitto: Any, relay: Any
) -> None:
    settings = MqttSettings(url=relay.url)
    async with (
        MqttClient(settings, "edge-rep", will=last_will(SITE, GATEWAY)) as edge,
        MqttClient(MqttSettings(url=mosquitto.url), "watch-rep") as watcher,
    ):
        await watcher.wait_connected(10)
        await watcher.subscribe(TOPIC)
        reporter = StatusReporter(edge, site=SITE, gateway=GATEWAY, interval_s=0.5, snapshot=online)
        task = asyncio.create_task(reporter.run())
        try:
            first = Status.model_validate_json((await next_message(watcher)).payload)
            assert first.state == "online"
            second = Status.model_validate_json((await next_message(watcher)).payload)
            assert second.state == "online"  # the interval
            assert second.at >= first.at
            # A reconnect publishes at once (the will said offline meanwhile).
            relay.cut()
            states = []
            for _ in range(10):
                message = await next_message(watcher)
                states.append(Status.model_validate_json(message.payload).state)
                if states[-2:] == ["offline", "online"]:
                    break
            assert states[-2:] == ["offline", "online"]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await reporter.publish_offline()
        for _ in range(10):
            last = Status.model_validate_json((await next_message(watcher)).payload)
            if last.state == "offline":
                break
        assert last.state == "offline"
    assert (await retained_status(mosquitto.url, "watch-end")).state == "offline"
