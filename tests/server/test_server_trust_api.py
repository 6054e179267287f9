"""The API's trust boundary probed from the attacker's side, on a real uvicorn socket.

Each test reruns a probe of issue 13 (finding 1 and 10) and asserts it now fails: bodies
are refused before they are read, keys are checked first and kept only as digests, failed
keys are rate limited, one key cannot hold every stream, webhooks cannot target internal
addresses, and ``/docs`` needs no CDN.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
import tomllib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from server_helpers import ADMIN_KEY, OPERATOR_KEY, VIEWER_KEY, make_settings
from typer.testing import CliRunner

from plumbing.settings import ConfigError, load
from server.alerts.webhooks import address_problem, target_problem
from server.api.context import KeyRing
from server.api.docs import assets_dir
from server.api.factory import create_app
from server.commands.csv_import import MAX_IMPORT_BYTES
from server.config.settings import ServerSettings
from server.store.database import Store
from stockgate.cli import app as cli

WAIT_S = 10.0
CHUNK = 64 * 1024


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[int]:
    """``app`` on a real uvicorn on a free loopback port; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):  # up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield sock.getsockname()[1]
    finally:
        await app.state.stream_feed.close()
        server.should_exit = True
        await task
        sock.close()


async def _status_line(reader: asyncio.StreamReader) -> int:
    line = await asyncio.wait_for(reader.readline(), WAIT_S)
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", line)
    assert match, f"not an HTTP status line: {line!r}"
    return int(match.group(1))


async def _answer_to_endless_body(port: int, headers: str) -> tuple[int, int]:
    """POST a chunked body that never ends; return the status and the bytes sent by then.

    The body is sent chunk by chunk while the answer is awaited: a server that reads the
    whole body first never answers (the test's timeout would fail it).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write(
            (
                "POST /api/v1/adjustments HTTP/1.1\r\nHost: t\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                f"{headers}\r\n"
            ).encode()
        )
        answer = asyncio.ensure_future(_status_line(reader))
        chunk = f"{CHUNK:x}\r\n".encode() + b"[" * CHUNK + b"\r\n"
        while not answer.done() and sent < 64 * 1024 * 1024:
            try:
                writer.write(chunk)
                await writer.drain()
            except ConnectionError:
                break
            sent += CHUNK
            await asyncio.sleep(0)
        return await answer, sent
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _api(store: Store, **api: Any) -> tuple[FastAPI, ServerSettings]:
    base = make_settings("sqlite+aiosqlite:///unused.db")
    settings = base.model_copy(update={"api": base.api.model_copy(update=api)})
    return create_app(store, settings), settings


async def test_a_body_without_a_key_is_refused_before_it_is_read(store: Store) -> None:
    app, _ = _api(store, max_body_bytes=4096)
    async with serving(app) as port:
        status, sent = await _answer_to_endless_body(port, "")
        assert status == 401
        wrong_status, _ = await _answer_to_endless_body(port, "Authorization: Bearer not-a-key\r\n")
        assert wrong_status == 401
    # The answer came while the body was still streaming, long before 64 MiB.
    assert sent < 64 * 1024 * 1024


async def test_a_body_past_the_limit_is_cut_off_while_it_streams(store: Store) -> None:
    limit = 8192
    app, _ = _api(store, max_body_bytes=limit)
    async with serving(app) as port:
        status, sent = await _answer_to_endless_body(
            port, f"Authorization: Bearer {OPERATOR_KEY}\r\n"
        )
        assert status == 413
        assert sent < 64 * 1024 * 1024
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            declared = await client.post(
                "/api/v1/adjustments",
                content=b"{" + b" " * (limit + 10) + b"}",
                headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
            )
            assert declared.status_code == 413
            assert str(limit) in declared.json()["detail"]
            # Outside /api as well: the limit is for every route.
            health = await client.post("/healthz", content=b"x" * (limit + 1))
            assert health.status_code == 413


async def test_a_csv_import_takes_more_than_the_default_limit(store: Store) -> None:
    app, _ = _api(store, max_body_bytes=1024)
    rows = "".join(f"wh1.a{n:04d}\n" for n in range(120))
    body = ("id\nwh1\n" + rows).encode()
    assert 1024 < len(body) < MAX_IMPORT_BYTES
    async with (
        serving(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        answer = await client.post(
            "/api/v1/locations.csv?dry_run=true",
            content=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "text/csv"},
        )
        assert answer.status_code == 200, answer.text[:300]
        too_big = await client.post(
            "/api/v1/locations.csv?dry_run=true",
            content=b"x" * (MAX_IMPORT_BYTES + 1),
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "text/csv"},
        )
        assert too_big.status_code == 413


async def test_guessing_keys_is_rate_limited(store: Store) -> None:
    app, _ = _api(store, auth_failures_per_minute=5)
    async with (
        serving(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        good = await client.get("/api/v1/stock", headers={"Authorization": f"Bearer {VIEWER_KEY}"})
        assert good.status_code == 200
        codes = [
            (await client.get("/api/v1/stock", headers={"Authorization": f"Bearer guess-{n}"}))
            for n in range(8)
        ]
        assert [answer.status_code for answer in codes] == [401] * 5 + [429] * 3
        assert int(codes[-1].headers["Retry-After"]) > 0
        # Blocked means blocked: even a right guess now gets no answer but 429.
        late = await client.get("/api/v1/stock", headers={"Authorization": f"Bearer {VIEWER_KEY}"})
        assert late.status_code == 429


async def test_keys_are_kept_as_digests_and_minted_keys_work(
    store: Store, database_url: str
) -> None:
    result = CliRunner().invoke(cli, ["server", "mint-key", "--role", "operator", "--name", "ops"])
    assert result.exit_code == 0, result.output
    [key] = re.findall(r"shown once; give it to its user\): (\S+)", result.output)
    entry = result.output.split("# Add to server.toml:\n", 1)[1]
    assert key not in entry
    assert hashlib.sha256(key.encode()).hexdigest() in entry
    parsed = tomllib.loads(entry)["api"]["keys"]
    keys = [
        {"key": VIEWER_KEY, "role": "viewer"},
        {"key": OPERATOR_KEY, "role": "operator"},
        {"key": ADMIN_KEY, "role": "admin"},
        *parsed,
    ]
    settings = make_settings(database_url, api={"host": "127.0.0.1", "port": 0, "keys": keys})
    ring = KeyRing(settings.api)
    principal = ring.find(key)
    assert principal is not None
    assert (principal.name, principal.role) == ("ops", "operator")
    assert ring.find(key[:-1]) is None
    # No key in the ring's memory, only digests.
    held = repr(vars(ring)) + repr(ring._by_digest)
    for secret in (key, VIEWER_KEY, OPERATOR_KEY, ADMIN_KEY):
        assert secret not in held
    async with (
        serving(create_app(store, settings)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        answer = await client.get("/api/v1/stock", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200


def test_a_key_entry_holds_exactly_one_form_of_the_key() -> None:
    digest = hashlib.sha256(b"x" * 20).hexdigest()
    for keys, needle in (
        ([{"role": "admin"}], "exactly one of key and key_sha256"),
        ([{"role": "admin", "key": "x" * 20, "key_sha256": digest}], "exactly one"),
        ([{"role": "admin", "key_sha256": "ABC"}], "key_sha256"),
        (
            [{"role": "admin", "key": "x" * 20}, {"role": "viewer", "key_sha256": digest}],
            "the same key",
        ),
    ):
        with pytest.raises(ConfigError, match=needle):
            load(ServerSettings, None, api={"keys": keys})


async def test_one_key_cannot_hold_every_stream(store: Store) -> None:
    base = make_settings("sqlite+aiosqlite:///unused.db")
    settings = base.model_copy(
        update={"stream": base.stream.model_copy(update={"max_clients_per_key": 2})}
    )
    app = create_app(store, settings)
    async with (
        serving(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as client,
        contextlib.AsyncExitStack() as streams,
    ):
        readers = []  # kept: a dropped reader would close its stream
        for _ in range(2):
            opened = await streams.enter_async_context(
                client.stream(
                    "GET", "/api/v1/stream", headers={"Authorization": f"Bearer {VIEWER_KEY}"}
                )
            )
            assert opened.status_code == 200
            readers.append(opened.aiter_bytes())
            await anext(readers[-1])  # subscribed once the first bytes come
        third = await client.get(
            "/api/v1/stream", headers={"Authorization": f"Bearer {VIEWER_KEY}"}
        )
        assert third.status_code == 429
        assert "max_clients_per_key" in third.json()["detail"]
        other = await streams.enter_async_context(
            client.stream("GET", "/api/v1/stream", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        )
        assert other.status_code == 200


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "169.254.169.254", "10.1.2.3", "192.168.1.1", "172.16.0.1", "100.64.0.1",
     "0.0.0.0", "::ffff:127.0.0.1", "fe80::1", "fd00::1", "224.0.0.1"],
)  # fmt: skip
def test_webhooks_may_not_target_internal_addresses(address: str) -> None:
    problem = address_problem(address)
    assert problem is not None
    assert "webhook_allow_private" in problem


def test_webhooks_may_target_public_addresses() -> None:
    assert address_problem("8.8.8.8") is None
    assert address_problem("2001:4860:4860::8888") is None


async def test_a_webhook_to_loopback_is_refused_unless_allowed() -> None:
    assert await target_problem("localhost") is not None
    assert await target_problem("127.0.0.1") is not None
    assert await target_problem("no-such-host.invalid") is not None


async def test_docs_are_served_from_the_package_without_a_cdn(store: Store) -> None:
    app, _ = _api(store)
    async with (
        serving(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            urls = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
            assert urls, html
            assert not [url for url in urls if "://" in url], urls
            for url in urls:
                asset = await client.get(url)
                assert asset.status_code == 200, url
                assert len(asset.content) > 1000
    assert (assets_dir() / "swagger-ui-bundle.js").is_file()
