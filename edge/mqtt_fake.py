"""An in-memory broker link: the in-repo fake of the broker port (``edge.mqtt_port``).

``FakeMqtt`` keeps the real client's contract (``plumbing.mqtt.MqttClient``) without a
broker: ``publish`` raises ``MqttNotConnected`` while it is disconnected and records
every publish the broker would have taken; ``subscribe`` is recorded; ``on_connect``
callbacks run at every ``connect()``; ``messages()`` yields what the test ``deliver``s.
A test can make it fail (every publish raises a given error until cleared) or drop the
link (``disconnect()``) and bring it back (``connect()``).

For unit tests of the publisher's and the status reporter's logic. Tests that exercise
the broker itself (the last will, sessions, a cut link) use the real Mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from plumbing.mqtt import Message, MqttError, MqttNotConnected, OnConnect

__all__ = ["FakeMqtt", "Published"]


@dataclass(frozen=True, slots=True)
class Published:
    """One publish the fake broker took."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class FakeMqtt:
    """A broker link that records publishes and can be made to fail or disconnect.

    Args:
        connected: whether the link starts up (``connect()`` brings it up later).
    """

    def __init__(self, *, connected: bool = True) -> None:
        self.published: list[Published] = []
        """Every publish taken, in order."""
        self.subscriptions: dict[str, int] = {}
        """Topic filters subscribed, with their QoS."""
        self.publish_error: MqttError | None = None
        """Raised by every publish while set (nothing is recorded then)."""
        self.refused = 0
        """Publishes that raised (offline or ``publish_error``)."""
        self.connects = 0
        """Times ``connect()`` brought the link up."""
        self._connected = asyncio.Event()
        if connected:
            self._connected.set()
        self._callbacks: list[OnConnect] = []
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._taken: asyncio.Queue[Published] = asyncio.Queue()

    # -- the port ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    def on_connect(self, callback: OnConnect) -> None:
        self._callbacks.append(callback)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if not self.connected:
            self.refused += 1
            raise MqttNotConnected("not connected (fake broker link)")
        if self.publish_error is not None:
            self.refused += 1
            raise self.publish_error
        taken = Published(topic, payload, qos, retain)
        self.published.append(taken)
        self._taken.put_nowait(taken)

    async def subscribe(self, topic_filter: str, qos: int = 1, *, timeout: float = 10.0) -> None:
        self.subscriptions[topic_filter] = qos

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            yield await self._inbox.get()

    # -- the test's side --------------------------------------------------------------

    async def connect(self) -> None:
        """Bring the link up and run the on-connect callbacks, as the real client does
        after every successful (re)connect (a callback's ``MqttError`` is ignored)."""
        self._connected.set()
        self.connects += 1
        for callback in self._callbacks:
            with contextlib.suppress(MqttError):
                await callback()

    def disconnect(self) -> None:
        """Drop the link: publishes raise ``MqttNotConnected`` until ``connect()``."""
        self._connected.clear()

    def deliver(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """A message arrives on a subscription (yielded by ``messages()``)."""
        self._inbox.put_nowait(Message(topic, payload, retain))

    async def next_published(self, timeout: float = 10.0) -> Published:
        """The next publish taken (oldest first, each once).

        Raises:
            TimeoutError: none within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            return await self._taken.get()

    def published_on(self, topic: str) -> list[Published]:
        """The publishes taken on ``topic``, in order."""
        return [p for p in self.published if p.topic == topic]
