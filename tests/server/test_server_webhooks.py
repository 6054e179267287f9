"""Webhooks to a real HTTP receiver on 127.0.0.1: signed, retried with backoff, durable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from server_helpers import GTIN_A, Probe, RecordingPublisher
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plumbing.backoff import Backoff
from server.alerts.relay import AlertRelay
from server.alerts.store import raise_alert
from server.alerts.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WebhookDispatcher,
    signature_header,
    verify_signature,
)
from server.config.alerts import AlertSettings, WebhookSettings
from server.config.settings import ServerSettings
from server.store.database import Store
from server.store.schema.alerts import webhook_deliveries

SECRET = "a-webhook-secret-0123456789"
WAIT_S = 10.0
FAST = AlertSettings(
    webhook_backoff_s=0.05,
    webhook_backoff_cap_s=0.2,
    webhook_timeout_s=2,
    webhook_allow_private=True,  # the receivers listen on 127.0.0.1
)


@dataclass
class Receiver:
    """A webhook receiver that answers the scripted statuses, then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def endpoint(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        status = self.statuses.pop(0) if self.statuses else 200
        return Response(status_code=status)


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):  # up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield receiver
    finally:
        server.should_exit = True
        await task
        sock.close()


def webhook(url: str, **extra: Any) -> WebhookSettings:
    return WebhookSettings.model_validate({"name": "ops", "url": url, "secret": SECRET, **extra})


@contextlib.asynccontextmanager
async def dispatching(dispatcher: WebhookDispatcher) -> AsyncIterator[WebhookDispatcher]:
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def queue_alert(store: Store, hooks: list[WebhookSettings]) -> None:
    """Raise an alert and fan it out to ``hooks`` (what the relay does in the server)."""
    async with store.begin("test") as conn:
        await raise_alert(conn, "unknown_item", GTIN_A, {"epc": "urn:epc:x"}, site="wh1")
    await AlertRelay(store, RecordingPublisher(), FAST, hooks).flush()


async def wait_for(probe: Probe, state: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for _ in range(500):  # up to 10 s
        rows = await probe.rows(webhook_deliveries)
        if rows and all(row["state"] == state for row in rows):
            [row] = rows
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"deliveries not {state} in time: {rows}")


async def test_a_delivery_is_signed_and_retried_after_a_500(store: Store, probe: Probe) -> None:
    async with receiving(Receiver(statuses=[500])) as receiver:
        hook = webhook(receiver.url)
        await queue_alert(store, [hook])
        async with dispatching(WebhookDispatcher(store, FAST, [hook])) as dispatcher:
            dispatcher.poke()
            row = await wait_for(probe, "delivered")

    assert (row["attempts"], row["last_status"], row["last_error"]) == (2, 200, None)
    assert len(receiver.received) == 2
    (first_headers, first_body), (headers, body) = receiver.received
    assert first_body == body  # the same delivery, sent again
    assert first_headers[DELIVERY_HEADER.lower()] == headers[DELIVERY_HEADER.lower()]
    assert verify_signature(SECRET, headers[SIGNATURE_HEADER.lower()], body)
    assert not verify_signature(
        "another-secret-0123456789", headers[SIGNATURE_HEADER.lower()], body
    )
    assert headers[EVENT_HEADER.lower()] == "opened"
    assert headers["content-type"] == "application/json"
    document = json.loads(body)
    assert (document["change"], document["delivery_id"]) == ("opened", row["id"])
    assert (document["alert"]["kind"], document["alert"]["subject"]) == ("unknown_item", GTIN_A)
    assert document["alert"]["evidence"] == {"epc": "urn:epc:x"}


async def test_pending_deliveries_survive_a_restart(
    store: Store, settings: ServerSettings, probe: Probe
) -> None:
    async with receiving(Receiver()) as receiver:
        hook = webhook(receiver.url)
        await queue_alert(store, [hook])  # queued; no dispatcher ran ("before the restart")
        assert (await probe.rows(webhook_deliveries))[0]["state"] == "pending"
        restarted = Store.open(settings.database)  # a new process: its own engine
        try:
            async with dispatching(WebhookDispatcher(restarted, FAST, [hook])):
                row = await wait_for(probe, "delivered")
        finally:
            await restarted.close()
    assert (row["attempts"], len(receiver.received)) == (1, 1)


async def test_a_receiver_that_keeps_failing_is_given_up_after_max_attempts(
    store: Store, probe: Probe
) -> None:
    settings = FAST.model_copy(update={"webhook_max_attempts": 3})
    async with receiving(Receiver(statuses=[500, 503, 500, 500])) as receiver:
        hook = webhook(receiver.url)
        await queue_alert(store, [hook])
        async with dispatching(WebhookDispatcher(store, settings, [hook])):
            row = await wait_for(probe, "failed")
    assert (row["attempts"], row["last_status"], row["last_error"]) == (3, 500, "HTTP 500")
    assert row["finished_at"] is not None
    assert len(receiver.received) == 3


async def test_an_unreachable_receiver_is_retried_later(store: Store, probe: Probe) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once closed
    hook = webhook(f"http://127.0.0.1:{port}/hook")
    slow = FAST.model_copy(update={"webhook_backoff_s": 60, "webhook_backoff_cap_s": 60})
    await queue_alert(store, [hook])
    dispatcher = WebhookDispatcher(store, slow, [hook])
    async with dispatching(dispatcher):
        for _ in range(500):  # up to 10 s
            if (await probe.rows(webhook_deliveries))[0]["attempts"] > 0:
                break
            await asyncio.sleep(0.02)
    [row] = await probe.rows(webhook_deliveries)
    assert (row["state"], row["last_status"]) == ("pending", None)
    assert "ConnectError" in row["last_error"]
    assert row["next_attempt_at"] > row["created_at"]


def test_signatures_refuse_tampering_and_replays() -> None:
    body = b'{"change":"opened"}'
    now = int(time.time())
    header = signature_header(SECRET, now, body)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, body + b" ")
    assert not verify_signature(SECRET, signature_header(SECRET, now - 3600, body), body)
    assert not verify_signature(SECRET, "v1=deadbeef", body)
    assert not verify_signature(SECRET, "t=x,v1=deadbeef", body)


def test_backoff_doubles_up_to_the_cap() -> None:
    steady = Backoff(1.0, 10.0, rand=lambda: 0.0)
    assert [steady.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert Backoff(1.0, 600.0).base_after(1000) == 600
    assert Backoff(1.0, 600.0, jitter=0.5, rand=lambda: 1.0).delay(3) == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "http://x/h", "secret": "short"}, "webhook secret must be"),
        ({"url": "ftp://x/h", "secret": SECRET}, "url"),
        ({"url": "http://u:p@x/h", "secret": SECRET}, "no credentials"),
        ({"url": "http://x/h", "secret": SECRET, "kinds": ["nope"]}, "unknown alert kinds"),
    ],
)
def test_bad_webhook_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebhookSettings.model_validate(values)
