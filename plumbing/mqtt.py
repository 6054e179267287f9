"""paho-mqtt on the asyncio event loop.

paho's network calls run from the loop's socket callbacks (``add_reader``/``add_writer``)
plus one housekeeping task; no paho thread exists, so every paho callback runs on the loop
and may touch our state directly. ``MqttClient`` owns one supervising task that connects
and reconnects forever with capped, jittered backoff, re-subscribes after each connect,
and turns paho's results into our exceptions. No paho object leaves this module.

Publishes are never queued in paho while offline (``publish`` raises ``MqttNotConnected``):
callers keep their own durable copy (the edge's outbox) and retry, because paho's
in-memory queue is not storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from plumbing.backoff import Backoff
from plumbing.settings import MqttSettings

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 10.0
BACKOFF_JITTER = 0.3
"""Clients that lost the broker together come back spread over 30 % of each delay."""
CONNECT_TIMEOUT_S = 10.0
MISC_INTERVAL_S = 0.5
RECEIVE_HIGH_WATER = 1000
"""Received messages waiting for the consumer before socket reads pause (back-pressure)."""
RECEIVE_LOW_WATER = 200
MAX_INFLIGHT = 64


class MqttError(Exception):
    """Base of the MQTT adapter's errors."""


class MqttNotConnected(MqttError):
    """The client is not connected to the broker; the caller keeps the data and retries."""


class MqttPublishTimeout(MqttError):
    """The broker did not acknowledge a publish in time."""


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


OnConnect = Callable[[], Awaitable[None]]


class MqttClient:
    """An MQTT 3.1.1 client that lives on the running asyncio loop.

    Args:
        settings: broker URL and credentials.
        client_id: the MQTT client id; keep it stable with ``clean_start=False`` so the
            broker queues QoS 1 messages for a subscriber while it is away.
        will: published by the broker if the connection dies without a clean disconnect.
        clean_start: start a fresh session on every connect.
    """

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str | None = None,
        *,
        will: Will | None = None,
        clean_start: bool = True,
    ) -> None:
        self._settings = settings
        self.client_id = client_id or f"stockgate-{uuid.uuid4().hex[:12]}"
        self._clean_start = clean_start
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=clean_start,
            protocol=paho.MQTTv311,
        )
        self._client.max_inflight_messages_set(MAX_INFLIGHT)
        self._client.max_queued_messages_set(MAX_INFLIGHT)
        if settings.username is not None:
            self._client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            context = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file else None
            )
            self._client.tls_set_context(context)
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_socket_register_write
        self._client.on_socket_unregister_write = self._on_socket_unregister_write

        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._connect_result: asyncio.Future[None] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._subscriptions: dict[str, int] = {}
        self._on_connect_callbacks: list[OnConnect] = []
        self._received: asyncio.Queue[Message] = asyncio.Queue()
        self._reading_paused = False
        self._sock: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.failed_connects = 0
        """Connection attempts that failed so far (a broker away is retried with backoff)."""

    # -- life cycle -------------------------------------------------------------------

    async def __aenter__(self) -> MqttClient:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._supervise(), name=f"mqtt-supervise-{self.client_id}"),
            asyncio.create_task(self._misc(), name=f"mqtt-misc-{self.client_id}"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if self._connected.is_set():
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._disconnected.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop_socket()
        self._fail_pending(MqttNotConnected("client closed"))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until connected.

        Raises:
            TimeoutError: not connected within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    def on_connect(self, callback: OnConnect) -> None:
        """Run ``callback`` after every successful (re)connect."""
        self._on_connect_callbacks.append(callback)

    async def _supervise(self) -> None:
        backoff = Backoff(BACKOFF_INITIAL_S, BACKOFF_MAX_S, jitter=BACKOFF_JITTER)
        while True:
            try:
                await self._connect_once()
            except (OSError, MqttError, TimeoutError) as err:
                self.failed_connects += 1
                delay = backoff.next_delay()
                log.warning(
                    "mqtt %s: cannot connect to %s: %s; retrying in %.1fs",
                    self.client_id,
                    self._settings.url,
                    err,
                    delay,
                )
                self._drop_socket()
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            log.info("mqtt %s: connected to %s", self.client_id, self._settings.url)
            await self._after_connect()
            await self._disconnected.wait()
            if self._closing:
                return
            log.warning("mqtt %s: connection to %s lost", self.client_id, self._settings.url)
            self._drop_socket()
            await asyncio.sleep(BACKOFF_INITIAL_S)

    async def _connect_once(self) -> None:
        assert self._loop is not None
        self._disconnected.clear()
        self._connect_result = self._loop.create_future()
        host, port = self._settings.host, self._settings.port
        # connect() does a blocking TCP connect (and TLS handshake); keep it off the loop.
        rc = await self._loop.run_in_executor(
            None, self._blocking_connect, host, port, self._settings.keepalive_s
        )
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(paho.error_string(rc))
        self._sock = self._client.socket()
        if self._sock is not None:
            self._loop.add_reader(self._sock, self._read)
            if self._client.want_write():
                self._loop.add_writer(self._sock, self._write)
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
        # that lands in the same loop turn as the result (CPython gh-86296).
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await self._connect_result

    def _blocking_connect(self, host: str, port: int, keepalive: int) -> MQTTErrorCode:
        # Socket callbacks fire during connect() on the executor thread; they are ignored
        # there and the socket is registered with the loop after this returns.
        code: MQTTErrorCode = self._client.connect(host, port, keepalive)
        return code

    async def _after_connect(self) -> None:
        for topic_filter, qos in self._subscriptions.items():
            self._client.subscribe(topic_filter, qos)
        for callback in self._on_connect_callbacks:
            try:
                await callback()
            except MqttError as err:
                log.warning("mqtt %s: on-connect callback failed: %s", self.client_id, err)

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(MISC_INTERVAL_S)
            if self._sock is not None:
                self._client.loop_misc()

    # -- socket plumbing (all on the loop) --------------------------------------------

    def _read(self) -> None:
        self._client.loop_read(max_packets=100)

    def _write(self) -> None:
        self._client.loop_write()

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # Registered by _connect_once once connect() returns (it runs on a worker thread).
        pass

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._drop_socket()

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None and self._sock is not None and not self._in_executor():
            self._loop.add_writer(self._sock, self._write)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None and self._sock is not None and not self._in_executor():
            self._loop.remove_writer(self._sock)

    def _in_executor(self) -> bool:
        try:
            return asyncio.get_running_loop() is not self._loop
        except RuntimeError:
            return True

    def _drop_socket(self) -> None:
        if self._loop is not None and self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._sock)
                self._loop.remove_writer(self._sock)
        self._sock = None
        self._reading_paused = False

    # -- paho callbacks (on the loop) -------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        future = self._connect_result
        if reason.is_failure:
            if future is not None and not future.done():
                future.set_exception(MqttError(f"broker refused the connection: {reason}"))
            return
        self._connected.set()
        if future is not None and not future.done():
            future.set_result(None)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        self._connected.clear()
        self._disconnected.set()
        self._fail_pending(MqttNotConnected(f"connection lost: {reason}"))
        future = self._connect_result
        if future is not None and not future.done():
            future.set_exception(MqttNotConnected(f"disconnected while connecting: {reason}"))

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        future = self._pending.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        future = self._pending.pop(mid, None)
        if future is None or future.done():
            return
        failed = [reason for reason in reasons if reason.is_failure]
        if failed:
            future.set_exception(MqttError(f"subscription refused: {failed[0]}"))
        else:
            future.set_result(None)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._received.put_nowait(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
        if self._received.qsize() >= RECEIVE_HIGH_WATER and not self._reading_paused:
            # Stop reading the socket until the consumer catches up; the broker holds
            # the rest (TCP back-pressure) instead of this process's memory.
            if self._loop is not None and self._sock is not None:
                self._loop.remove_reader(self._sock)
            self._reading_paused = True

    def _fail_pending(self, error: MqttError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    # -- public operations ------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK.

        Raises:
            MqttNotConnected: offline now or the connection dropped before the PUBACK.
            MqttPublishTimeout: no PUBACK within ``timeout``.
        """
        if not self.connected or self._loop is None:
            raise MqttNotConnected(f"not connected to {self._settings.url}")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttNotConnected(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        if info.is_published():
            return
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending[info.mid] = future
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError as err:
            self._pending.pop(info.mid, None)
            raise MqttPublishTimeout(f"no PUBACK for {topic} within {timeout}s") from err

    async def subscribe(self, topic_filter: str, qos: int = 1, *, timeout: float = 10.0) -> None:
        """Subscribe now if connected, and again after every reconnect.

        Raises:
            MqttError: the broker refused the subscription.
        """
        self._subscriptions[topic_filter] = qos
        if not self.connected or self._loop is None:
            return
        rc, mid = self._client.subscribe(topic_filter, qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise MqttNotConnected(f"subscribe to {topic_filter} failed: {paho.error_string(rc)}")
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending[mid] = future
        async with asyncio.timeout(timeout):
            await future

    async def messages(self) -> AsyncIterator[Message]:
        """Every message received on any subscription, in arrival order."""
        while True:
            message = await self._received.get()
            if self._reading_paused and self._received.qsize() <= RECEIVE_LOW_WATER:
                self._reading_paused = False
                if self._loop is not None and self._sock is not None:
                    self._loop.add_reader(self._sock, self._read)
            yield message
