"""The gateway's retained status message and its last will.

The status topic always holds the latest ``Status`` (retained, QoS 1): ``online`` with
reader states, outbox depth, the age of the oldest unacknowledged event and read rates,
published on every connect and every ``interval_s``. If the link dies without a clean
disconnect the broker publishes the last will, the same topic with state ``offline``
(retained); a clean shutdown publishes ``offline`` itself, because a clean disconnect
suppresses the will. The will's ``at`` is the time it was built (the broker cannot stamp
it); consumers read "offline since about then or later".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from edge.mqtt_port import MqttPort
from plumbing import software_version
from plumbing.mqtt import MqttError, Will
from wire import topics
from wire.models import Status, now_utc

log = logging.getLogger(__name__)

OFFLINE_PUBLISH_TIMEOUT_S: Final = 3.0
"""Longest a shutdown waits to publish the offline status."""

Snapshot = Callable[[], Awaitable[Status]]


def offline_status(site: str, gateway: str, config_version: int | None = None) -> Status:
    """The status a gateway leaves behind when it goes away (with what it runs)."""
    return Status(
        gateway=gateway,
        site=site,
        state="offline",
        at=now_utc(),
        software_version=software_version(),
        config_version=config_version,
    )


def last_will(site: str, gateway: str, config_version: int | None = None) -> Will:
    """The MQTT last will: the offline status, retained, on the gateway's status topic.

    The will is fixed when the client is built, so its ``config_version`` is the one of
    the start; the server keeps the last online status's version beside it.
    """
    return Will(
        topic=topics.status(site, gateway),
        payload=offline_status(site, gateway, config_version).model_dump_json().encode(),
        qos=1,
        retain=True,
    )


class StatusReporter:
    """Publishes the retained status on every connect and every ``interval_s``.

    Args:
        client: the broker link (``edge.mqtt_port``): the agent's MQTT client, built with
            ``will=last_will(site, gateway)``.
        site: this gateway's site id.
        gateway: this gateway's id.
        interval_s: time between two status messages while connected.
        snapshot: builds the current online status.
        config_version: the remote config version running, for the offline status.
    """

    def __init__(
        self,
        client: MqttPort,
        *,
        site: str,
        gateway: str,
        interval_s: float,
        snapshot: Snapshot,
        config_version: Callable[[], int | None] | None = None,
    ) -> None:
        self._client = client
        self.site = site
        self.gateway = gateway
        self.topic = topics.status(site, gateway)
        self._interval_s = interval_s
        self._snapshot = snapshot
        self._config_version = config_version
        self._wake = asyncio.Event()
        self.published = 0

    async def run(self) -> None:
        """Publish until cancelled."""
        self._client.on_connect(self._on_connect)
        while True:
            self._wake.clear()
            if self._client.connected:
                await self.publish_now()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()

    async def _on_connect(self) -> None:
        self._wake.set()

    def poke(self) -> None:
        """Publish a status now (e.g. a remote config was applied or refused)."""
        self._wake.set()

    async def publish_now(self) -> bool:
        """Publish the current status once; False when the broker could not take it."""
        status = await self._snapshot()
        try:
            await self._client.publish(
                self.topic, status.model_dump_json().encode(), qos=1, retain=True
            )
        except MqttError as err:
            log.info("status: not published: %s", err)
            return False
        self.published += 1
        return True

    async def publish_offline(self) -> bool:
        """Publish the offline status (clean shutdown); False if the broker is not reachable.

        When it is not reachable the broker has already published the last will, or will
        once the keepalive runs out.
        """
        version = self._config_version() if self._config_version is not None else None
        payload = offline_status(self.site, self.gateway, version).model_dump_json().encode()
        try:
            await self._client.publish(
                self.topic, payload, qos=1, retain=True, timeout=OFFLINE_PUBLISH_TIMEOUT_S
            )
        except MqttError as err:
            log.info("status: offline status not published: %s", err)
            return False
        return True
