"""`stockgate edge --check`: validate a config, try the broker and each reader, report.

The config itself was validated when it was loaded (the command never gets here with a
bad key). Each check is bounded in time and independent of the others, so one dead
reader does not hide the state of the rest. Exit status 0 only when every check passed.

A reader passes when its whole handshake (ROSpec, EPC mask and photo-eye inputs
included) is accepted and it has the GPI inputs and GPO outputs the portals on it use
(photo-eyes, light stacks).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TextIO

import serial

from edge.config import EdgeSettings, LlrpSettings, ScannerSettings
from edge.readers.llrp import LlrpReader
from edge.readers.types import StateChanged
from edge.remote_config import RemoteConfig
from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings

CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    subject: str
    ok: bool
    detail: str


async def check_broker(
    settings: MqttSettings, gateway: str, timeout: float = CHECK_TIMEOUT_S
) -> CheckResult:
    subject = f"broker {settings.url}"
    try:
        async with MqttClient(settings, f"{gateway}-check") as client:
            await client.wait_connected(timeout)
    except TimeoutError:
        return CheckResult(subject, False, f"no connection within {timeout:g}s")
    return CheckResult(subject, True, "connected")


def gpio_needs(settings: EdgeSettings, reader: str) -> tuple[list[int], list[int]]:
    """GPI inputs and GPO outputs the portals on ``reader`` use."""
    gpis: set[int] = set()
    gpos: set[int] = set()
    for portal in settings.portals:
        if portal.reader != reader:
            continue
        if portal.gpi_port is not None:
            gpis.add(portal.gpi_port)
        if portal.lights is not None:
            lights = portal.lights
            gpos.update(p for p in (lights.accepted, lights.unexpected, lights.offline) if p)
    return sorted(gpis), sorted(gpos)


def _gpio_problem(caps_gpis: int, caps_gpos: int, gpis: list[int], gpos: list[int]) -> str:
    missing = []
    beyond_in = [p for p in gpis if p > caps_gpis]
    beyond_out = [p for p in gpos if p > caps_gpos]
    if beyond_in:
        missing.append(f"GPI {beyond_in} configured, the reader has {caps_gpis} GPIs")
    if beyond_out:
        missing.append(f"GPO {beyond_out} configured, the reader has {caps_gpos} GPOs")
    return "; ".join(missing)


async def check_llrp(
    settings: LlrpSettings,
    timeout: float = CHECK_TIMEOUT_S,
    *,
    gpis: list[int] | None = None,
    gpos: list[int] | None = None,
) -> CheckResult:
    """Connect, run the whole handshake (ROSpec included), then stop politely.

    Args:
        settings: the reader.
        timeout: longest the handshake may take.
        gpis: GPI inputs the config uses on this reader (switched on in the handshake).
        gpos: GPO outputs the config uses on this reader.
    """
    subject = f"reader {settings.name} ({settings.host}:{settings.port})"
    last = "no answer"
    gpis, gpos = gpis or [], gpos or []
    async with LlrpReader(settings, gpi_ports=gpis) as reader:
        try:
            async with asyncio.timeout(timeout):
                async for item in reader:
                    if not isinstance(item, StateChanged):
                        continue
                    if item.state == "connected":
                        caps = reader.capabilities
                        detail = "handshake complete"
                        if caps is not None:
                            detail += (
                                f"; {caps.max_antennas} antennas, manufacturer "
                                f"{caps.manufacturer}, model {caps.model}, firmware {caps.firmware}"
                            )
                            problem = _gpio_problem(caps.gpis, caps.gpos, gpis, gpos)
                            if problem:
                                return CheckResult(subject, False, f"{detail}; {problem}")
                            if gpis or gpos:
                                detail += f"; GPI {gpis} and GPO {gpos} available"
                            down = reader.antennas_disconnected
                            if down:
                                detail += f"; antennas {down} report disconnected"
                        return CheckResult(subject, True, detail)
                    if item.detail:
                        last = item.detail
        except TimeoutError:
            pass
    return CheckResult(subject, False, f"no handshake within {timeout:g}s: {last}")


def check_scanner(settings: ScannerSettings) -> CheckResult:
    subject = f"scanner {settings.name} ({settings.port})"
    try:
        with serial.Serial(settings.port, settings.baudrate, timeout=0):
            pass
    except (serial.SerialException, OSError) as err:
        return CheckResult(subject, False, f"cannot open: {err}")
    return CheckResult(subject, True, "port opens")


async def run_checks(settings: EdgeSettings, timeout: float = CHECK_TIMEOUT_S) -> list[CheckResult]:
    async with asyncio.TaskGroup() as group:
        broker = group.create_task(check_broker(settings.mqtt, settings.gateway.id, timeout))
        readers = [
            group.create_task(
                check_llrp(
                    reader,
                    timeout,
                    gpis=gpio_needs(settings, reader.name)[0],
                    gpos=gpio_needs(settings, reader.name)[1],
                )
            )
            for reader in settings.llrp
        ]
    results = [broker.result(), *(task.result() for task in readers)]
    results += [check_scanner(scanner) for scanner in settings.scanners]
    return results


async def check_edge(
    settings: EdgeSettings, out: TextIO = sys.stdout, timeout: float = CHECK_TIMEOUT_S
) -> int:
    """Print one line per check; 0 when all passed, 1 otherwise.

    The readers are checked with the settings the agent would run: the file with the last
    good remote configuration over it (``edge.remote_config``), which is said first.
    """
    out.write(f"config: ok (gateway {settings.gateway.id}, site {settings.gateway.site})\n")
    remote = RemoteConfig(settings, settings.remote_config_path)
    settings = remote.load_saved()
    if remote.rejected is not None:
        out.write(f"remote config: the saved one is not used: {remote.rejected.reason}\n")
    elif remote.version is not None:
        out.write(f"remote config: version {remote.version} (saved), over the file\n")
    results = await run_checks(settings, timeout)
    for result in results:
        out.write(f"{'ok  ' if result.ok else 'FAIL'} {result.subject}: {result.detail}\n")
    failed = sum(not result.ok for result in results)
    out.write("all checks passed\n" if not failed else f"{failed} check(s) failed\n")
    return 0 if not failed else 1
