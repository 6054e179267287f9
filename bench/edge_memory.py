"""``edge.rss_mb_1m_buffered``: resident memory of an edge agent with a million events held.

The outbox is filled through its own API (``Outbox.append`` and ``flush``) with full pass
events, each with its own id, EPC and times. Then a fresh process (``bench.edge_rss``) runs
the real ``EdgeAgent`` over it and reads its VmRSS; see that module for what runs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from bench import llrp_stream
from bench.edge import remove_outbox
from bench.edge_config import GATEWAY, READ_POINT, SITE
from bench.figures import Figure, Target
from edge.buffer.outbox import Outbox
from edge.passes import Pass
from plumbing.settings import MqttSettings
from wire import topics
from wire.models import Event

RSS_TARGET_MB: Final = 100.0
FILL_CHUNK: Final = 50_000
"""Events appended per commit while building the outbox."""
RSS_SETTLE_S: Final = 4.0
"""How long the probe agent runs (publisher window filled, status sent) before sampling."""
RSS_TIMEOUT_S: Final = 180.0
WATCHER_STOP_S: Final = 5.0
REPO: Final = Path(__file__).resolve().parent.parent


class _Backlog:
    """The events of a long backlog: copies of one dock-door pass event, each with its own
    id, EPC and times (the JSON an edge stores for a pass, of the same size)."""

    def __init__(self) -> None:
        self.template = Pass(
            read_point=READ_POINT,
            epc_hex=llrp_stream.sgtin96_hex(100_000, 1),
            direction="in",
            confidence=0.969,
            count=57,
            antennas=(1, 2),
            peak_rssi=-41.0,
            first_seen_us=llrp_stream.BASE_TIME_US,
            last_seen_us=llrp_stream.BASE_TIME_US + 2_900_000,
        ).to_event("placeholder:0")
        reads = self.template.reads
        assert reads is not None
        self.reads = reads

    def event(self, number: int, event_id: str) -> Event:
        shift = timedelta(milliseconds=number * 7)
        reads = self.reads.model_copy(
            update={
                "first_seen": self.reads.first_seen + shift,
                "last_seen": self.reads.last_seen + shift,
            }
        )
        return self.template.model_copy(
            update={
                "event_id": event_id,
                "epc": f"urn:epc:id:sgtin:0614141.{100_000 + number % 64}.{number + 1}",
                "event_time": self.template.event_time + shift,
                "reads": reads,
            }
        )


async def fill_outbox(path: Path, events: int) -> float:
    """Append ``events`` pass events to a new outbox at ``path`` through the Outbox API.

    Every event is a full dock-door pass event with its own id, EPC and times, committed
    by ``Outbox.flush`` in chunks of ``FILL_CHUNK`` (the flusher's threshold raised so the
    build takes seconds, not minutes). Returns the seconds it took.
    """
    backlog = _Backlog()
    started = time.perf_counter()
    async with Outbox.open(
        path, GATEWAY, flush_threshold=FILL_CHUNK, commit_interval_ms=1000
    ) as outbox:
        for number in range(events):
            outbox.append(functools.partial(backlog.event, number))
            if outbox.pending >= FILL_CHUNK:
                await outbox.flush()
        await outbox.flush()
        if outbox.depth() != events:
            raise RuntimeError(f"outbox holds {outbox.depth()} events, wanted {events}")
    return time.perf_counter() - started


def memory(events: int, workdir: Path, mqtt_url: str, settle_s: float = RSS_SETTLE_S) -> Figure:
    """``edge.rss_mb_1m_buffered``: a fresh edge agent process over an outbox of ``events``."""
    path = workdir / "edge-outbox-full.db"
    remove_outbox(path)
    fill_seconds = asyncio.run(fill_outbox(path, events))
    file_mb = sum(
        p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    ) / (1024 * 1024)
    broker = MqttSettings(url=mqtt_url)
    # Watches the gateway's events topic, to show the agent really published its backlog.
    watch = ["-h", broker.host, "-p", str(broker.port), "-q", "1", "-F", "%l"]
    watcher = subprocess.Popen(
        ["mosquitto_sub", *watch, "-t", topics.events(SITE, GATEWAY)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        probe = ["--outbox", str(path), "--gateway", GATEWAY, "--site", SITE, "--mqtt", mqtt_url]
        done = subprocess.run(
            [sys.executable, "-m", "bench.edge_rss", *probe, "--settle-s", str(settle_s)],
            capture_output=True,
            text=True,
            timeout=RSS_TIMEOUT_S,
            check=False,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        watcher.terminate()
        seen, _ = watcher.communicate(timeout=WATCHER_STOP_S)
    if done.returncode != 0:
        raise RuntimeError(f"edge RSS probe failed ({done.returncode}): {done.stderr[-2000:]}")
    batches_seen = len(seen.split())
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    rss_mb = measured["vm_rss_kb"] / 1024
    remove_outbox(path)
    return Figure(
        key="edge.rss_mb_1m_buffered",
        value=round(rss_mb, 1),
        unit="MB",
        how=(
            f"{events:,} pass events appended through Outbox.append/flush to an outbox file "
            f"({file_mb:,.0f} MB on disk); then a fresh process runs the real EdgeAgent on it "
            f"(one LLRP reader configured, unreachable; one portal; Mosquitto connected, no "
            f"server, so nothing is acknowledged and the publisher keeps its window in flight) "
            f"and reads VmRSS from /proc/self/status after {settle_s:g} s."
        ),
        target=Target("<=", RSS_TARGET_MB),
        detail={
            "events_held": measured["depth"],
            "batches_published_meanwhile": batches_seen,
            "vm_hwm_mb": round(measured["vm_hwm_kb"] / 1024, 1),
            "outbox_file_mb": round(file_mb, 1),
            "fill_seconds": round(fill_seconds, 1),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
