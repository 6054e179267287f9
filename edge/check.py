"""`stockgate edge --check`: validate a config, try the broker and each reader, report.

The config itself was validated when it was loaded (the command never gets here with a
bad key). Each check is bounded in time and independent of the others, so one dead
reader does not hide the state of the rest. Exit status 0 only when every check passed.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TextIO

import serial

from edge.config import EdgeSettings, LlrpSettings, ScannerSettings
from edge.readers.llrp import LlrpReader
from edge.readers.types import ReaderEvent
from stockgate.mqtt import MqttClient
from stockgate.settings import MqttSettings

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


async def check_llrp(settings: LlrpSettings, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
    """Connect, run the whole handshake (ROSpec included), then stop politely."""
    subject = f"reader {settings.name} ({settings.host}:{settings.port})"
    last = "no answer"
    async with LlrpReader(settings) as reader:
        try:
            async with asyncio.timeout(timeout):
                async for item in reader:
                    if not isinstance(item, ReaderEvent) or item.kind != "state":
                        continue
                    if item.state == "connected":
                        caps = reader.capabilities
                        detail = "handshake complete"
                        if caps is not None:
                            detail += (
                                f"; {caps.max_antennas} antennas, manufacturer "
                                f"{caps.manufacturer}, model {caps.model}, firmware {caps.firmware}"
                            )
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
        readers = [group.create_task(check_llrp(reader, timeout)) for reader in settings.llrp]
    results = [broker.result(), *(task.result() for task in readers)]
    results += [check_scanner(scanner) for scanner in settings.scanners]
    return results


async def check_edge(
    settings: EdgeSettings, out: TextIO = sys.stdout, timeout: float = CHECK_TIMEOUT_S
) -> int:
    """Print one line per check; 0 when all passed, 1 otherwise."""
    out.write(f"config: ok (gateway {settings.gateway.id}, site {settings.gateway.site})\n")
    results = await run_checks(settings, timeout)
    for result in results:
        out.write(f"{'ok  ' if result.ok else 'FAIL'} {result.subject}: {result.detail}\n")
    failed = sum(not result.ok for result in results)
    out.write("all checks passed\n" if not failed else f"{failed} check(s) failed\n")
    return 0 if not failed else 1
