"""Run in a fresh process: an edge agent over a full outbox, then print its memory as JSON.

``python -m bench.edge_rss --outbox FILE --gateway ID --site ID --mqtt URL`` starts the real
``EdgeAgent`` (one LLRP reader configured on a port where nothing listens, one portal),
lets it run ``--settle-s`` seconds so the outbox is opened and counted, the publisher has
filled its in-flight window and the status has gone out, then prints one JSON line:
``{"vm_rss_kb": ..., "vm_hwm_kb": ..., "depth": ...}`` and stops the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
from pathlib import Path

from bench.edge_config import edge_settings
from edge.agent import EdgeAgent

STOP_TIMEOUT_S = 30.0


def proc_status_kb(field: str) -> int:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound and released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def measure(
    outbox: Path, gateway: str, site: str, mqtt_url: str, settle_s: float
) -> dict[str, int]:
    settings = edge_settings(outbox, mqtt_url=mqtt_url, reader_port=_closed_port())
    if settings.gateway.id != gateway or settings.gateway.site != site:
        raise SystemExit(f"the outbox was built for {gateway}/{site}, the config says otherwise")
    agent = EdgeAgent(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="edge-agent")
    await asyncio.sleep(settle_s)
    if task.done():
        task.result()  # raises what stopped the agent early
    depth = agent.outbox.depth() if agent.outbox is not None else -1
    result = {
        "vm_rss_kb": proc_status_kb("VmRSS"),
        "vm_hwm_kb": proc_status_kb("VmHWM"),
        "depth": depth,
    }
    stop.set()
    async with asyncio.timeout(STOP_TIMEOUT_S):
        await task
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outbox", type=Path, required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("--mqtt", required=True)
    parser.add_argument("--settle-s", type=float, default=4.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(measure(args.outbox, args.gateway, args.site, args.mqtt, args.settle_s))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
