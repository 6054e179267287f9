"""`--check` of a reader also checks the photo-eye inputs and light outputs its portals use."""

from __future__ import annotations

from typing import Any

from edge.check import check_llrp, gpio_needs
from edge.config import EdgeSettings
from firmware_sim.fake_reader import FakeLlrpReader, request_params
from firmware_sim.llrp_types import MsgType


def settings(port: int, lights: dict[str, Any]) -> EdgeSettings:
    return EdgeSettings(
        gateway={"id": "gw-check", "site": "wh1"},
        llrp=[{"name": "dock1", "host": "127.0.0.1", "port": port, "keepalive_s": 1}],
        portals=[
            {
                "read_point": "wh1.dock.1",
                "reader": "dock1",
                "outside_antennas": [1],
                "inside_antennas": [2],
                "gpi_port": 2,
                "gpi_window": True,
                "lights": lights,
            }
        ],
    )


async def test_the_check_passes_when_the_reader_has_the_ports() -> None:
    async with FakeLlrpReader(max_antennas=4) as fake:  # 4 GPIs, 4 GPOs
        config = settings(fake.port, {"accepted": 1, "offline": 4})
        gpis, gpos = gpio_needs(config, "dock1")
        assert (gpis, gpos) == ([2], [1, 4])
        result = await check_llrp(config.llrp[0], 5, gpis=gpis, gpos=gpos)
        sent = request_params(fake.requests(MsgType.SET_READER_CONFIG)[0])
    assert result.ok, result.detail
    assert "GPI [2] and GPO [1, 4] available" in result.detail
    assert sent["GPIPortCurrentState"]["GPIPortNum"] == 2, "the handshake switched it on"


async def test_the_check_fails_naming_ports_the_reader_lacks() -> None:
    async with FakeLlrpReader(max_antennas=4) as fake:
        config = settings(fake.port, {"accepted": 1, "unexpected": 6})
        gpis, gpos = gpio_needs(config, "dock1")
        result = await check_llrp(config.llrp[0], 5, gpis=gpis, gpos=gpos)
    assert not result.ok
    assert "GPO [6] configured, the reader has 4 GPOs" in result.detail
