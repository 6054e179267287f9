"""The installers and the packaging, on real parts: the wheel built from this tree, pip
into fresh venvs (offline, from the wheelhouse ``make`` keeps in ``.venv/wheelhouse``),
the install scripts run into temporary roots, ``systemd-analyze verify`` on the units they
wrote, and the installed gateway run against a simulated reader and a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from firmware_sim.reader import ReaderSimulator
from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from wire import topics
from wire.models import Status

# One worker builds the venvs of this module once (``make pytest`` runs --dist loadgroup).
pytestmark = [pytest.mark.xdist_group("deploy-installers")]

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"
INSTALL_TIMEOUT_S = 300
RUN_TIMEOUT_S = 60
SERVER_LIBRARIES = ("fastapi", "sqlalchemy", "alembic", "uvicorn", "asyncpg", "amqtt")
SERVER_LIBRARIES += ("influxdb_client", "httpx")
SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "wire", "edge", "server")
SOURCE_PARTS += ("plumbing", "stockgate", "firmware-sim")
UDEV_PAIR = re.compile(r'^(?:[A-Z_]+(?:\{[A-Za-z_]+\})?)(==|!=|\+=|:=|=)"[^"]*"$')


def _pip_offline() -> str:
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"no wheelhouse at {WHEELHOUSE}: `make .venv/.installed` builds it")
    return f"--no-index --find-links {WHEELHOUSE}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this tree, built from a copy (a build leaves files where it runs)."""
    source = tmp_path_factory.mktemp("source")
    for part in SOURCE_PARTS:
        origin = REPO / part
        if origin.is_dir():
            shutil.copytree(
                origin, source / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(origin, source / part)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *(*_pip_offline().split(), "-w", str(out), str(source)),
        ],
        check=True,
        capture_output=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    (built,) = out.glob("stockgate-*.whl")
    return built


def _install(script: str, root: Path, wheel: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *("bash", str(REPO / "deploy" / script), "--prefix", str(root)),
            *("--wheel", str(wheel)),
            # (No byte-compiling: it is most of the install time and nothing here needs it.)
            *("--pip-args", f"{_pip_offline()} --no-compile"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def edge_root(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    root = tmp_path_factory.mktemp("edge-root")
    done = _install("install-edge.sh", root, wheel)
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def server_root(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    root = tmp_path_factory.mktemp("server-root")
    done = _install("install-server.sh", root, wheel)
    assert done.returncode == 0, done.stderr
    return root


def _venv(root: Path) -> Path:
    return root / "opt" / "stockgate" / "venv" / "bin"


def _found(python: Path, modules: tuple[str, ...]) -> list[str]:
    probe = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] "
    probe += "if importlib.util.find_spec(m)))"
    out = subprocess.run(
        [str(python), "-c", probe, *modules], check=True, capture_output=True, text=True
    )
    return out.stdout.split()


def _verify(unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_the_wheel_is_pure_python(wheel: Path) -> None:
    assert wheel.name.endswith("-py3-none-any.whl")
    assert wheel.name.startswith(f"stockgate-{importlib.metadata.version('stockgate')}-")


def test_the_wheel_ships_the_console_pages_and_assets(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as built:
        names = set(built.namelist())
    shipped = {
        path.relative_to(REPO).as_posix()
        for folder in ("templates", "static")
        for path in (REPO / "server" / "console" / folder).iterdir()
    }
    assert shipped
    assert shipped <= names


def test_a_gateway_install_has_the_edge_and_no_server_stack(edge_root: Path) -> None:
    python = _venv(edge_root) / "python"
    assert _found(python, SERVER_LIBRARIES) == []
    assert _found(python, ("sllurp", "paho", "aiosqlite", "serial")) == [
        "sllurp",
        "paho",
        "aiosqlite",
        "serial",
    ]
    # Everything the edge and the simulators run imports with the edge extra alone...
    modules = "edge.agent, edge.check, edge.readers.llrp, edge.readers.serial_scanner"
    modules += ", edge.remote_config, firmware_sim.reader, firmware_sim.cli"
    subprocess.run([str(python), "-c", f"import {modules}"], check=True)
    # ...and the server does not.
    refused = subprocess.run(
        [str(python), "-c", "import server.app"], capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0
    assert "ModuleNotFoundError" in refused.stderr
    version = subprocess.run(
        [str(_venv(edge_root) / "stockgate"), "--version"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert version.stdout.strip() == f"stockgate {importlib.metadata.version('stockgate')}"


def test_the_edge_installer_writes_a_unit_that_verifies(edge_root: Path) -> None:
    units = edge_root / "etc" / "systemd" / "system"
    unit = units / "stockgate-edge.service"
    _verify(unit)
    text = unit.read_text()
    assert f"ExecStart={_venv(edge_root)}/stockgate edge --config {edge_root}/etc/stockgate/" in (
        text
    )
    after = next(line for line in text.splitlines() if line.startswith("After="))
    assert "time-sync.target" in after
    assert "systemd-time-wait-sync.service" in after
    assert "StandardError=journal" in text
    assert (units / "multi-user.target.wants" / "stockgate-edge.service").resolve() == unit
    bounded = units / "systemd-time-wait-sync.service.d" / "stockgate.conf"
    assert "TimeoutStartSec=" in bounded.read_text()
    assert (
        "Storage=persistent"
        in (edge_root / "etc" / "systemd" / "journald.conf.d" / "stockgate.conf").read_text()
    )

    passwd = (edge_root / "etc" / "passwd").read_text()
    assert re.search(r"^stockgate:x:\d+:\d+:", passwd, re.MULTILINE), passwd
    group = (edge_root / "etc" / "group").read_text()
    assert re.search(r"^dialout:x:\d+:.*stockgate", group, re.MULTILINE), group

    config = edge_root / "etc" / "stockgate" / "edge.toml"
    assert config.read_bytes() == (REPO / "deploy" / "edge.example.toml").read_bytes()
    assert config.stat().st_mode & 0o777 == 0o640

    rules = (edge_root / "etc" / "udev" / "rules.d" / "70-stockgate-scanners.rules").read_text()
    lines = [line for line in rules.splitlines() if line and not line.startswith("#")]
    assert lines
    for line in lines:
        for pair in line.split(", "):
            assert UDEV_PAIR.match(pair), f"not a udev key/value: {pair!r} in {line!r}"
    assert 'GROUP="stockgate"' in rules
    assert 'SYMLINK+="stockgate/scanner-$env{ID_SERIAL}"' in rules


def test_running_the_installer_again_upgrades_and_keeps_the_config(
    edge_root: Path, wheel: Path
) -> None:
    config = edge_root / "etc" / "stockgate" / "edge.toml"
    edited = config.read_text() + "# edited on site\n"
    config.write_text(edited)
    example = edge_root / "etc" / "stockgate" / "edge.example.toml"
    example.write_text("# stale\n")

    again = _install("install-edge.sh", edge_root, wheel)
    assert again.returncode == 0, again.stderr

    assert config.read_text() == edited
    assert example.read_bytes() == (REPO / "deploy" / "edge.example.toml").read_bytes()
    assert "kept" in again.stdout
    _verify(edge_root / "etc" / "systemd" / "system" / "stockgate-edge.service")
    passwd = (edge_root / "etc" / "passwd").read_text().splitlines()
    assert sum(line.startswith("stockgate:") for line in passwd) == 1


def test_the_server_installer_gives_the_server_and_a_unit_that_verifies(
    server_root: Path,
) -> None:
    python = _venv(server_root) / "python"
    subprocess.run([str(python), "-c", "import server.app, server.store.backup"], check=True)
    assert _found(python, ("sllurp", "serial", "aiosqlite")) == []
    unit = server_root / "etc" / "systemd" / "system" / "stockgate-server.service"
    _verify(unit)
    assert f"{_venv(server_root)}/stockgate server --config" in unit.read_text()
    assert (server_root / "etc" / "stockgate" / "server.toml").is_file()
    assert not (server_root / "etc" / "udev").exists()


def _edge_toml(root: Path, broker_url: str, reader_port: int) -> Path:
    config = root / "run" / "edge.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"""
[gateway]
id = "gw-installed"
site = "wh1"
[mqtt]
url = "{broker_url}"
[buffer]
path = "{root / "run" / "outbox.db"}"
[status]
interval_s = 1
[[llrp]]
name = "dock1"
host = "127.0.0.1"
port = {reader_port}
keepalive_s = 5
[[portals]]
read_point = "wh1.dock.1"
reader = "dock1"
outside_antennas = [1]
inside_antennas = [2]
"""
    )
    return config


async def _statuses(observer: MqttClient, found: list[Status]) -> None:
    async for message in observer.messages():
        if message.payload:
            found.append(Status.model_validate_json(message.payload))


@pytest.mark.broker
async def test_the_installed_gateway_checks_and_runs_against_a_simulated_reader(
    edge_root: Path, mosquitto
) -> None:
    stockgate = str(_venv(edge_root) / "stockgate")
    version = importlib.metadata.version("stockgate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKGATE_")}
    async with ReaderSimulator(antennas=2, name="dock1", seed=7) as sim:
        config = _edge_toml(edge_root, mosquitto.url, sim.port)
        check = await asyncio.create_subprocess_exec(
            stockgate, "edge", "--config", str(config), "--check", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(check.communicate(), RUN_TIMEOUT_S)
        assert check.returncode == 0, (out.decode(), err.decode())
        assert "all checks passed" in out.decode()

        found: list[Status] = []
        observer = MqttClient(MqttSettings(url=mosquitto.url), "install-observer")
        async with observer, asyncio.TaskGroup() as tasks:
            await observer.wait_connected(10)
            await observer.subscribe(topics.status("wh1", "gw-installed"))
            listening = tasks.create_task(_statuses(observer, found))
            agent = await asyncio.create_subprocess_exec(
                stockgate, "edge", "--config", str(config), env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + RUN_TIMEOUT_S
                while not any(
                    s.state == "online" and s.readers and s.readers[0].state == "connected"
                    for s in found
                ):
                    assert time.monotonic() < deadline, f"no connected status: {found[-1:]}"
                    assert agent.returncode is None, "the installed edge exited"
                    await asyncio.sleep(0.1)
            finally:
                agent.send_signal(signal.SIGTERM)
                _, agent_err = await asyncio.wait_for(agent.communicate(), RUN_TIMEOUT_S)
            assert agent.returncode == 0, agent_err.decode()[-2000:]
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while found[-1].state != "offline":
                assert time.monotonic() < deadline, "no offline status after the stop"
                await asyncio.sleep(0.1)
            listening.cancel()

    online = next(s for s in found if s.state == "online")
    assert online.software_version == version
    assert online.readers[0].antennas == [1, 2]
    assert online.disk_free_bytes is not None
    assert online.disk_free_bytes > 0
    assert found[-1].software_version == version
    assert json.loads(found[-1].model_dump_json())["version"] == 1
