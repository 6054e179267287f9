"""`stockgate edge --check` against a real broker and a reader on real TCP."""

from __future__ import annotations

import io
import socket

import pytest

from edge.check import check_edge
from edge.config import EdgeSettings
from firmware_sim.fake_reader import FakeLlrpReader
from plumbing.settings import load

pytestmark = pytest.mark.broker


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _settings(mqtt_url: str, reader_port: int) -> EdgeSettings:
    return load(
        EdgeSettings,
        gateway={"id": "gw-check", "site": "wh1"},
        mqtt={"url": mqtt_url},
        llrp=[{"name": "dock1", "host": "127.0.0.1", "port": reader_port, "keepalive_s": 1}],
    )


async def test_check_passes_when_broker_and_reader_answer(mosquitto, tmp_path) -> None:
    async with FakeLlrpReader(max_antennas=4) as fake:
        out = io.StringIO()
        code = await check_edge(_settings(mosquitto.url, fake.port), out, timeout=5)
    report = out.getvalue()
    assert code == 0, report
    assert "ok   reader dock1" in report
    assert "4 antennas" in report
    assert "all checks passed" in report


async def test_check_names_the_reader_that_does_not_answer(mosquitto) -> None:
    out = io.StringIO()
    code = await check_edge(_settings(mosquitto.url, _closed_port()), out, timeout=1.5)
    report = out.getvalue()
    assert code == 1
    assert "FAIL reader dock1" in report
    assert "ok   broker" in report
    assert "1 check(s) failed" in report
