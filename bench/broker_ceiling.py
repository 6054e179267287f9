"""``broker.raw_msgs_per_s``: the ceiling the broker sets, with no server at all.

The server benchmark's payloads through the same Mosquitto: ``mosquitto_pub -l`` (one
message per line, QoS 1) to a ``mosquitto_sub`` (QoS 1); the clock runs from starting
``mosquitto_pub`` to the last message arriving at the subscriber.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Final

from bench.figures import Figure
from bench.server_workload import BATCH_EVENTS

RAW_TIMEOUT_S: Final = 300.0
SUB_READY_TIMEOUT_S: Final = 10.0
RAW_TOPIC: Final = "bench/raw"
READY_TOPIC: Final = "bench/ready"


async def _raw_run(host: str, port: int, payloads: list[bytes], workdir: Path) -> float:
    lines = workdir / "raw-payloads.txt"
    with lines.open("wb") as out:
        for payload in payloads:
            if b"\n" in payload:
                raise ValueError("a payload holds a newline; mosquitto_pub -l cannot send it")
            out.write(payload + b"\n")
    connect = ["-h", host, "-p", str(port), "-q", "1"]
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub",
        *connect,
        "-t",
        RAW_TOPIC,
        "-t",
        READY_TOPIC,
        "-F",
        "%t %l",
        stdout=asyncio.subprocess.PIPE,
    )
    assert sub.stdout is not None
    try:
        # Subscribed once a ready probe comes back; probes repeat until one does.
        async with asyncio.timeout(SUB_READY_TIMEOUT_S):
            while True:
                probe = await asyncio.create_subprocess_exec(
                    "mosquitto_pub", *connect, "-t", READY_TOPIC, "-m", "ready"
                )
                await probe.wait()
                try:
                    async with asyncio.timeout(0.3):
                        line = await sub.stdout.readline()
                except TimeoutError:
                    continue
                if line.startswith(READY_TOPIC.encode()):
                    break
        expected = sum(len(payload) for payload in payloads)
        received = count = 0
        started = time.perf_counter()
        with lines.open("rb") as source:
            pub = await asyncio.create_subprocess_exec(
                "mosquitto_pub", *connect, "-t", RAW_TOPIC, "-l", stdin=source
            )
        async with asyncio.timeout(RAW_TIMEOUT_S):
            while count < len(payloads):
                line = await sub.stdout.readline()
                if not line:
                    raise RuntimeError("mosquitto_sub ended early")
                topic, _, size = line.decode().strip().partition(" ")
                if topic == RAW_TOPIC:
                    count += 1
                    received += int(size)
            seconds = time.perf_counter() - started
            await pub.wait()
        if received != expected:
            raise RuntimeError(f"subscriber got {received} payload bytes, {expected} were sent")
        return seconds
    finally:
        if sub.returncode is None:
            sub.terminate()
        await sub.wait()
        lines.unlink(missing_ok=True)


def broker_raw(
    host: str, port: int, payloads: list[bytes], workdir: Path, *, rounds: int = 1
) -> Figure:
    """``broker.raw_msgs_per_s``: the server benchmark's payloads, broker only.

    The payloads are sent ``rounds`` times over, so there are enough messages to time.
    """
    messages = payloads * rounds
    seconds = asyncio.run(_raw_run(host, port, messages, workdir))
    rate = len(messages) / seconds
    events_rate = rate * BATCH_EVENTS
    return Figure(
        key="broker.raw_msgs_per_s",
        value=round(rate, 1),
        unit="msgs/s",
        how=(
            f"The {len(payloads):,} payloads of server.events_per_s, sent {rounds} times over "
            f"({len(messages):,} messages), through the same Mosquitto with no server: "
            "`mosquitto_pub -l -q 1` (one message per line) to `mosquitto_sub -q 1`, timed from "
            "starting mosquitto_pub to the last message at the subscriber (every byte counted). "
            f"The ceiling: {events_rate:,.0f} events/s equivalent."
        ),
        detail={
            "messages": len(messages),
            "distinct_payloads": len(payloads),
            "seconds": round(seconds, 3),
            "events_per_s_equivalent": round(events_rate, 1),
        },
    )
