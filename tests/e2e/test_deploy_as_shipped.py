"""The production deploy as shipped: deploy/mosquitto.conf, server and edge example configs.

A CA and a broker certificate are made for the test (openssl), the broker's password file
and ACL come from ``stockgate server broker-config`` over the example server config, and
Mosquitto runs the shipped ``deploy/mosquitto.conf``. The configs are used as shipped
except for what a test machine must change: host names, ports and paths, the admin key's
hash, the wait for an NTP-synchronised clock, and the hardware this machine lacks (the
photo-eye and light stack of the portal, the handheld on /dev/ttyACM0, the metrics port).
A simulated dock door then runs through server and edge processes talking TLS with
per-gateway credentials, and the stock must match the scenario's ground truth.

Then the broker is probed from an attacker's side (issue 13, finding 5), with the real
gateway's own credentials where that is the stronger probe: no anonymous client, no
wrong password, no taking the server's client id, no publishing another gateway's status
(its last will) or on another site's topics, no message past ``max_packet_size``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bench.broker import free_port, mosquitto_binary, wait_listening
from firmware_sim.scenario import bundled_scenario, load_scenario
from plumbing.mqtt import Message, MqttClient, MqttError
from plumbing.settings import MqttSettings
from wire import topics

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
STOCKGATE = str(Path(sys.executable).parent / "stockgate")
DEADLINE_S = 60.0
PROBE_WAIT_S = 2.0
GATEWAY = "gw-dock-1"


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is not installed (make test installs it)"
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> None:
    """A CA and a broker certificate for localhost and 127.0.0.1, valid for a day."""
    folder.mkdir()
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=stockgate test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    (folder / "san.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-out", "server.crt", "-extfile", "san.cnf",
        cwd=folder,
    )  # fmt: skip


def _sub(text: str, old: str, new: str) -> str:
    assert old in text, f"the shipped config no longer holds {old!r}"
    return text.replace(old, new)


def _drop_lines(text: str, *patterns: str) -> str:
    return "\n".join(
        line for line in text.splitlines() if not any(re.match(p, line) for p in patterns)
    )


def _drop_table(text: str, header: str) -> str:
    """``text`` without the TOML table that starts at the line ``header``."""
    kept, skipping = [], False
    for line in text.splitlines():
        if line.strip().startswith("["):
            skipping = line.strip() == header
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n"


class Deploy:
    """The files and processes of one deploy in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.broker_port, self.api_port, self.reader_port = free_port(), free_port(), free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.key = secrets.token_urlsafe(32)

    def env_of(self, user: str) -> dict[str, str]:
        line = (self.root / "broker" / "credentials" / f"{user}.env").read_text().strip()
        name, _, value = line.partition("=")
        return {name: value}

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        log.close()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)

    def settings(self, user: str | None, password: str | None = None) -> MqttSettings:
        return MqttSettings(
            url=f"mqtts://localhost:{self.broker_port}",
            username=user,
            password=password if password is not None or user is None else self.password(user),
            ca_file=self.root / "certs" / "ca.crt",
        )

    def password(self, user: str) -> str:
        return next(iter(self.env_of(user).values()))


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deploy]:
    found = Deploy(tmp_path)
    try:
        yield found
    finally:
        found.stop_all()


def write_configs(deploy: Deploy) -> None:
    root = deploy.root
    make_certificates(root / "certs")
    (root / "data").mkdir()
    server = (DEPLOY / "server.example.toml").read_text()
    server = _sub(server, "broker.example.internal:8883", f"localhost:{deploy.broker_port}")
    server = _sub(server, "/etc/stockgate/ca.crt", str(root / "certs" / "ca.crt"))
    server = _sub(server, "/var/lib/stockgate/", f"{root / 'data'}/")
    server = _sub(server, "port = 8000", f"port = {deploy.api_port}")
    digest = hashlib.sha256(deploy.key.encode()).hexdigest()
    server = _sub(server, "0" * 64, digest)
    (root / "server.toml").write_text(server)

    edge = (DEPLOY / "edge.example.toml").read_text()
    edge = _sub(edge, "broker.example.internal:8883", f"localhost:{deploy.broker_port}")
    edge = _sub(edge, "/etc/stockgate/ca.crt", str(root / "certs" / "ca.crt"))
    edge = _sub(edge, "/var/lib/stockgate/", f"{root / 'data'}/")
    edge = _sub(
        edge,
        'host = "192.168.10.21"\nport = 5084',
        f'host = "127.0.0.1"\nport = {deploy.reader_port}',
    )
    # This machine's clock is not disciplined by NTP (the kernel says so): do not wait for it.
    edge = _sub(edge, "wait_for_time_sync_s = 120", "wait_for_time_sync_s = 0")
    # Hardware this machine lacks: the photo-eye and lights, the handheld, a metrics port.
    edge = _drop_lines(edge, r"^gpi_", r"^# A photo-eye")
    for table in ("[portals.lights]", "[[scanners]]", "[metrics]"):
        edge = _drop_table(edge, table)
    (root / "edge.toml").write_text(edge)

    broker = (DEPLOY / "mosquitto.conf").read_text()
    broker = _sub(broker, "listener 8883", f"listener {deploy.broker_port} 127.0.0.1")
    broker = _sub(broker, "/etc/mosquitto/certs/", f"{root / 'certs'}/")
    broker = broker.replace("/etc/mosquitto/stockgate/", f"{root / 'broker'}/")
    broker = _sub(broker, "/var/lib/mosquitto/", f"{root / 'mosquitto-data'}/")
    (root / "mosquitto-data").mkdir()
    # The test's files live in a private temp folder the mosquitto user cannot reach, so the
    # broker keeps root's rights here (a real install gets the files' group; broker-config).
    broker += f"\nuser root\nlog_dest file {root / 'mosquitto.log'}\nlog_type all\n"
    (root / "mosquitto.conf").write_text(broker)

    made = subprocess.run(
        [STOCKGATE, "server", "broker-config", "--config", str(root / "server.toml"),
         "--out", str(root / "broker"),
         # A second server user (as a second instance would have) for the probes' watcher:
         # user names are client ids, so it must not be the server's own.
         "--server-user", "stockgate-server", "--server-user", "stockgate-watch"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr


@contextlib.asynccontextmanager
async def connected(
    settings: MqttSettings, client_id: str | None = None
) -> AsyncIterator[MqttClient]:
    async with MqttClient(settings, client_id) as client:
        await client.wait_connected(DEADLINE_S)
        yield client


async def refused(settings: MqttSettings) -> bool:
    """Whether the broker keeps ``settings`` out (no connection within a few seconds)."""
    async with MqttClient(settings) as client:
        try:
            await client.wait_connected(PROBE_WAIT_S)
        except TimeoutError:
            return True
        return False


async def collect(client: MqttClient, into: list[Message]) -> None:
    async for message in client.messages():
        into.append(message)


async def test_the_shipped_deploy_works_and_keeps_attackers_out(deploy: Deploy) -> None:
    write_configs(deploy)
    scenario_file = bundled_scenario("small")
    truth = load_scenario(scenario_file).ground_truth()
    deploy.start("mosquitto", [mosquitto_binary(), "-c", str(deploy.root / "mosquitto.conf")])
    assert wait_listening(deploy.broker_port, 10), deploy.log("mosquitto")
    deploy.start(
        "server",
        [STOCKGATE, "server", "--config", str(deploy.root / "server.toml")],
        deploy.env_of("stockgate-server"),
    )
    headers = {"Authorization": f"Bearer {deploy.key}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{deploy.api_port}", headers=headers
    ) as api:

        async def healthy() -> bool:
            try:
                answer = await api.get("/healthz")
            except httpx.TransportError:
                return False
            return answer.status_code == 200

        async with asyncio.timeout(DEADLINE_S):
            while not await healthy():
                assert deploy.procs["server"].poll() is None, deploy.log("server")
                await asyncio.sleep(0.2)
        deploy.start(
            "sim",
            [STOCKGATE, "sim", "scenario", str(scenario_file), "--port", str(deploy.reader_port)],
        )
        deploy.start(
            "edge", [STOCKGATE, "edge", "--config", str(deploy.root / "edge.toml")],
            deploy.env_of(GATEWAY),
        )  # fmt: skip
        expected = len(truth.received) + len(truth.shipped)
        async with asyncio.timeout(DEADLINE_S):
            while True:
                moves = (await api.get("/api/v1/movements", params={"limit": 1000})).json()
                if len(moves["items"]) >= expected:
                    break
                await asyncio.sleep(0.3)
        await asyncio.sleep(2)  # nothing more may arrive
        page = (await api.get("/api/v1/stock", params={"limit": 1000})).json()
        stock = {(row["gtin"], row["location"]): row["on_hand"] for row in page["items"]}
        assert stock == truth.stock, deploy.log("edge")
        moves = (await api.get("/api/v1/movements", params={"limit": 1000})).json()
        assert len(moves["items"]) == expected

        # --- the attacker's side ---------------------------------------------------------
        assert await refused(deploy.settings(None))
        assert await refused(deploy.settings(GATEWAY, password="not-the-password"))
        assert await refused(deploy.settings("gw-never-enrolled", password="guess-0123456789"))

        seen: list[Message] = []
        async with connected(deploy.settings("stockgate-watch")) as watcher:
            await watcher.subscribe(f"{topics.PREFIX}/#")
            watching = asyncio.create_task(collect(watcher, seen))
            try:
                # The real gateway's own credentials, asking for the server's client id.
                async with connected(deploy.settings(GATEWAY), "stockgate-server") as rogue:
                    forged_will = (
                        b'{"version":1,"gateway":"gw-dock-2","site":"wh1","state":"offline",'
                        b'"at":"2026-01-01T00:00:00Z"}'
                    )
                    await rogue.publish(topics.status("wh1", "gw-dock-2"), forged_will)
                    await rogue.publish(topics.events("wh2", GATEWAY), b"{}")
                    await rogue.publish(topics.ack("wh1", GATEWAY), b"{}")
                    # Past max_packet_size: the broker drops it and the connection.
                    with contextlib.suppress(MqttError):
                        await rogue.publish(
                            topics.events("wh1", GATEWAY), b"x" * 2_000_000, timeout=5
                        )
                # A marker it may publish, after the forbidden ones: once the watcher has it,
                # anything forbidden that got through would have arrived before it.
                async with connected(deploy.settings(GATEWAY)) as gateway:
                    marker = b'{"marker": "' + secrets.token_hex(8).encode() + b'"}'
                    await gateway.publish(topics.status("wh1", GATEWAY), marker)
                async with asyncio.timeout(DEADLINE_S):
                    while not any(message.payload == marker for message in seen):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching

        forbidden = [
            message.topic
            for message in seen
            if message.topic
            in (
                topics.status("wh1", "gw-dock-2"),
                topics.events("wh2", GATEWAY),
                topics.ack("wh1", GATEWAY),
            )
            or len(message.payload) > 1_000_000
        ]
        assert forbidden == []
        broker_log = deploy.log("mosquitto")
        # use_username_as_clientid: the rogue connected as itself (it took the place of the
        # real gw-dock-1, whose password it holds) and the server kept its id and connection.
        assert "Client stockgate-server already connected" not in broker_log
        assert re.search(r"New client connected from \S+ as gw-dock-1 ", broker_log)
        gateways = (await api.get("/api/v1/gateways")).json()["items"]
        assert "gw-dock-2" not in {row["id"] for row in gateways}
        assert deploy.procs["server"].poll() is None, deploy.log("server")
