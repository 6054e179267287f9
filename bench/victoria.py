"""A real VictoriaMetrics process on a free loopback port, the InfluxDB stand-in of tests.

VictoriaMetrics takes the InfluxDB v2 write API that influxdb-client speaks and gives the
points back through ``/api/v1/export`` (one series per measurement and numeric field,
named ``<measurement>_<field>``, tags as labels; string fields are not kept). It is
started with:

- ``-retentionPeriod=100y``: test data carries fixed dates in the past, which the default
  retention of one month would drop;
- ``-dedup.minScrapeInterval=1ms``: one sample per series and millisecond, which is what
  InfluxDB does for a point written twice (one point per series and timestamp). Without
  it a step the history follower sends again would show up twice here while InfluxDB
  would hold it once.

The storage directory is kept across ``stop`` and ``start``, so a test can take the sink
down and bring it back with what it held.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Final

from bench.broker import ChildProcess, free_port

START_TIMEOUT_S: Final = 30.0
HTTP_TIMEOUT_S: Final = 10.0


class VictoriaMetricsError(RuntimeError):
    """VictoriaMetrics is missing, did not start, or refused a request."""


def victoria_binary() -> str:
    """The path of ``victoria-metrics`` (Debian package ``victoria-metrics``).

    Raises:
        VictoriaMetricsError: it is not installed.
    """
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(binary).exists():
        raise VictoriaMetricsError(
            "victoria-metrics is not installed (apt-get install victoria-metrics)"
        )
    return binary


class VictoriaMetrics(ChildProcess):
    """One VictoriaMetrics server.

    Args:
        workdir: its storage and log go here (must exist).
        port: the port to listen on; 0 picks a free one.
    """

    def __init__(self, workdir: Path, port: int = 0) -> None:
        super().__init__()
        self.binary = victoria_binary()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.storage = workdir / "storage"
        self.log = workdir / "victoria-metrics.log"

    def start(self) -> None:
        """Start it and wait until it reports healthy.

        Raises:
            VictoriaMetricsError: it did not become healthy within ``START_TIMEOUT_S``.
        """
        if self._proc is not None:
            return
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.storage}",
                    "-retentionPeriod=100y",
                    "-dedup.minScrapeInterval=1ms",
                    "-loggerLevel=ERROR",
                    # Idle keep-alive connections of a killed client would hold a stop for 7 s.
                    "-http.maxGracefulShutdownDuration=1s",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self._get("/health") == b"OK":
                    return
            except (OSError, VictoriaMetricsError):
                pass
            if self._proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise VictoriaMetricsError(f"victoria-metrics did not start on {self.port}; see {self.log}")

    def _get(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(self.url + path, timeout=HTTP_TIMEOUT_S) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as err:
            raise VictoriaMetricsError(f"GET {path}: HTTP {err.code}") from err

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every series matching ``match`` (a series selector) with all its samples, after
        making what was written searchable."""
        self._get("/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": match})
        body = self._get(f"/api/v1/export?{query}")
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]
