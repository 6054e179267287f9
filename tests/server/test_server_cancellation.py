"""The server's background loops stop when cancelled, even when poked in the same turn.

On Python 3.11, ``asyncio.wait_for`` returns the inner result instead of raising when a
cancellation arrives in the loop turn in which the awaited thing completed (CPython
gh-86296). A ``while True`` loop that waits that way for its wake-up event can then
swallow the server's shutdown and run forever, which hung a whole CI run once. These
tests put each loop exactly there: idle on its wake-up event, poked, then cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from server_helpers import RecordingPublisher

from server.alerts.relay import AlertRelay
from server.alerts.stream import StreamEvent, Subscription
from server.alerts.webhooks import WebhookDispatcher
from server.config.alerts import AlertSettings, WebhookSettings
from server.store.database import Store

STOP_TIMEOUT_S = 5.0


async def idle_on(waitable: asyncio.Event | asyncio.Queue[Any]) -> None:
    """Until a task waits on ``waitable`` (the loop did its first round and went idle).

    Reads asyncio's private waiter lists: there is no public way to see that a task is
    parked on an event or a queue, and the test is only meaningful once it is.
    """
    waiters = "_waiters" if isinstance(waitable, asyncio.Event) else "_getters"
    for _ in range(500):
        if getattr(waitable, waiters):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the loop never went idle on its wake-up event")


async def poke_then_cancel(
    run: Callable[[], Coroutine[Any, Any, None]],
    waitable: asyncio.Event | asyncio.Queue[Any],
    poke: Callable[[], None],
) -> asyncio.Task[None]:
    task = asyncio.create_task(run())
    await idle_on(waitable)
    poke()
    await asyncio.sleep(0)  # the wait on the event completes in this turn ...
    task.cancel()  # ... and the shutdown lands right behind it
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await asyncio.wait({task})
    return task


async def test_the_alert_relay_stops_when_cancelled_as_it_is_poked(store: Store) -> None:
    relay = AlertRelay(store, RecordingPublisher(), AlertSettings(relay_interval_s=60))
    task = await poke_then_cancel(relay.run, relay._wake, relay.poke)
    assert task.cancelled(), "the relay went on after its cancellation"


async def test_the_webhook_dispatcher_stops_when_cancelled_as_it_is_poked(store: Store) -> None:
    hook = WebhookSettings.model_validate(
        {"name": "erp", "url": "http://127.0.0.1:9/hook", "secret": "s" * 20}
    )
    dispatcher = WebhookDispatcher(store, AlertSettings(), [hook])
    task = await poke_then_cancel(dispatcher.run, dispatcher._wake, dispatcher.poke)
    assert task.cancelled(), "the dispatcher went on after its cancellation"


async def test_a_stream_reader_stops_when_cancelled_as_an_event_arrives() -> None:
    subscription = Subscription(frozenset({"movements"}), lambda site: True, size=10)
    event = StreamEvent(topic="movements", sites=frozenset({"wh1"}), sse=b"data: {}\n\n")

    async def read_forever() -> None:
        while True:
            await subscription.next(timeout=60)

    task = await poke_then_cancel(
        read_forever, subscription._queue, lambda: subscription.offer(event)
    )
    assert task.cancelled(), "the stream reader went on after its cancellation"
