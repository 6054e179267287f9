"""`stockgate server --config` and `stockgate edge --config` as separate processes.

The two halves and a simulated dock door (`stockgate sim scenario`) run as the commands
an installer would start, talking only through a real Mosquitto and real LLRP over TCP.
"""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from firmware_sim.scenario import bundled_scenario, load_scenario

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

STOCKGATE = str(Path(sys.executable).parent / "stockgate")
DEADLINE_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Processes:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen([STOCKGATE, *args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def _get(client: httpx.Client, path: str) -> httpx.Response | None:
    try:
        return client.get(path)
    except httpx.TransportError:
        return None


def test_server_edge_and_simulator_as_separate_processes(
    mosquitto, tmp_path: Path, processes: Processes
) -> None:
    scenario_file = bundled_scenario("small")
    scenario = load_scenario(scenario_file)
    truth = scenario.ground_truth()
    api_port, reader_port = _free_port(), _free_port()
    key = secrets.token_urlsafe(24)
    (tmp_path / "server.toml").write_text(
        f'[mqtt]\nurl = "{mosquitto.url}"\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "stockgate.db"}"\n'
        f'[api]\nhost = "127.0.0.1"\nport = {api_port}\n'
        f'[[api.keys]]\nkey = "{key}"\nrole = "viewer"\n'
        f'[[read_points]]\nid = "{scenario.read_point}"\n'
        f'inbound_location = "{scenario.inbound_location}"\noutbound = "ship"\n'
    )
    (tmp_path / "edge.toml").write_text(
        f'[gateway]\nid = "gw-dock-1"\nsite = "{scenario.site}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\n'
        f'[buffer]\npath = "{tmp_path / "edge-outbox.db"}"\n'
        f'[[llrp]]\nname = "{scenario.reader.name}"\nhost = "127.0.0.1"\nport = {reader_port}\n'
        f'[[portals]]\nread_point = "{scenario.read_point}"\n'
        f'reader = "{scenario.reader.name}"\n'
        f"outside_antennas = {list(scenario.reader.outside_antennas)}\n"
        f"inside_antennas = {list(scenario.reader.inside_antennas)}\n"
    )
    sim = processes.start("sim", "sim", "scenario", str(scenario_file), "--port", str(reader_port))
    processes.start("server", "server", "--config", str(tmp_path / "server.toml"))
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + DEADLINE_S
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=headers) as api:
        while (response := _get(api, "/healthz")) is None or response.status_code != 200:
            assert time.monotonic() < deadline, processes.log("server")
            time.sleep(0.2)
        edge = processes.start("edge", "edge", "--config", str(tmp_path / "edge.toml"))

        assert sim.wait(timeout=DEADLINE_S) == 0, processes.log("sim")
        while time.monotonic() < deadline:
            moves = api.get("/api/v1/movements", params={"limit": 1000}).json()["items"]
            if len(moves) >= len(truth.received) + len(truth.shipped):
                break
            time.sleep(0.3)
        # Everything the scenario moved arrived; nothing more may arrive after it.
        time.sleep(3)
        page = api.get("/api/v1/stock", params={"limit": 1000}).json()
        stock = {(r["gtin"], r["location"]): r["on_hand"] for r in page["items"]}
        moves = api.get("/api/v1/movements", params={"limit": 1000}).json()["items"]
        assert stock == truth.stock, processes.log("edge")
        assert len(moves) == len(truth.received) + len(truth.shipped)

        # systemd stops the edge with SIGTERM: it exits cleanly and says it is offline.
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(timeout=20) == 0, processes.log("edge")
        for _ in range(50):
            gateways = api.get("/api/v1/gateways").json()
            states = {g["id"]: g["state"] for g in gateways["items"]}
            if states.get("gw-dock-1") == "offline":
                break
            time.sleep(0.2)
        assert states.get("gw-dock-1") == "offline", gateways
