"""The asyncio paho adapter against a real Mosquitto."""

from __future__ import annotations

import asyncio
import socket

import pytest

from plumbing.mqtt import Message, MqttClient, MqttNotConnected, Will
from plumbing.settings import MqttSettings

pytestmark = pytest.mark.broker


async def _next(client: MqttClient, timeout: float = 5.0) -> Message:
    async def first() -> Message:
        async for message in client.messages():
            return message
        raise AssertionError("message stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_publish_subscribe_round_trip(mosquitto) -> None:
    settings = MqttSettings(url=mosquitto.url)
    async with MqttClient(settings, "sub") as sub, MqttClient(settings, "pub") as pub:
        await sub.wait_connected(5)
        await pub.wait_connected(5)
        await sub.subscribe("t/#")
        await pub.publish("t/a", b"hello", qos=1)
        message = await _next(sub)
    assert message == Message("t/a", b"hello", False)


async def test_publish_while_offline_raises_and_reconnects(mosquitto) -> None:
    settings = MqttSettings(url=mosquitto.url)
    async with MqttClient(settings, "pub") as pub, MqttClient(settings, "sub") as sub:
        await pub.wait_connected(5)
        mosquitto.stop()
        for _ in range(100):
            if not pub.connected:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(MqttNotConnected):
            await pub.publish("t/x", b"1")
        mosquitto.start()
        await pub.wait_connected(15)
        await sub.wait_connected(15)
        await sub.subscribe("t/#")
        await pub.publish("t/x", b"2")
        message = await _next(sub)
    assert message.payload == b"2"


async def test_subscription_survives_broker_restart(mosquitto) -> None:
    settings = MqttSettings(url=mosquitto.url)
    async with MqttClient(settings, "sub") as sub:
        await sub.wait_connected(5)
        await sub.subscribe("keep/#")
        mosquitto.stop()
        mosquitto.start()
        async with MqttClient(settings, "pub") as pub:
            await pub.wait_connected(15)
            await sub.wait_connected(15)
            # The re-subscription is sent right after the reconnect; give it a moment.
            for _ in range(50):
                await pub.publish("keep/1", b"x")
                try:
                    message = await _next(sub, timeout=0.2)
                    break
                except TimeoutError:
                    continue
            else:
                raise AssertionError("no message after the broker came back")
    assert message.topic == "keep/1"


async def test_last_will_is_published_when_the_connection_dies(mosquitto) -> None:
    settings = MqttSettings(url=mosquitto.url, keepalive_s=5)
    will = Will("gw/status", b"offline", qos=1, retain=True)
    async with MqttClient(settings, "watcher") as watcher:
        await watcher.wait_connected(5)
        await watcher.subscribe("gw/status")
        dying = MqttClient(settings, "dying", will=will)
        await dying.__aenter__()
        await dying.wait_connected(5)
        # Kill the TCP connection without a DISCONNECT packet, as a crash would.
        sock = dying._client.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)
        message = await _next(watcher, timeout=10)
        await dying.__aexit__(None, None, None)
    assert message.payload == b"offline"
