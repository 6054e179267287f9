"""The broker port: the few operations of the MQTT client the publisher and the status
reporter use.

``plumbing.mqtt.MqttClient`` is the real one (the agent hands the publisher and the
status reporter the same client); ``edge.mqtt_fake.FakeMqtt`` is the in-repo fake the
unit tests of their logic plug in instead (architecture.md §7: fakes only for the I/O
port of the unit under test). The contract is the real client's: ``publish`` raises
``MqttNotConnected`` while offline (nothing is queued) and waits for the PUBACK at QoS 1;
``subscribe`` is recorded and made again after every reconnect; ``on_connect``
callbacks run after every (re)connect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from plumbing.mqtt import Message, OnConnect

__all__ = ["MqttPort"]


class MqttPort(Protocol):
    """The broker link as the publisher and the status reporter use it."""

    @property
    def connected(self) -> bool:
        """Whether the broker link is up now."""
        ...

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until connected (``TimeoutError`` after ``timeout`` seconds)."""
        ...

    def on_connect(self, callback: OnConnect) -> None:
        """Run ``callback`` after every successful (re)connect."""
        ...

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK (``MqttError`` if not)."""
        ...

    async def subscribe(self, topic_filter: str, qos: int = 1, *, timeout: float = 10.0) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        ...

    def messages(self) -> AsyncIterator[Message]:
        """Every message received on any subscription, in arrival order."""
        ...
