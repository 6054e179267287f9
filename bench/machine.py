"""The machine a run measured: CPU model, cores, memory, Python, SQLite, Mosquitto, date."""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

MOSQUITTO_VERSION_TIMEOUT_S = 5.0


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` as a fallback)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def memory_gb() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def mosquitto_version() -> str | None:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        return None
    try:
        # `mosquitto -h` prints "mosquitto version X" first and exits non-zero.
        done = subprocess.run(
            [binary, "-h"],
            capture_output=True,
            text=True,
            timeout=MOSQUITTO_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (done.stdout or done.stderr).splitlines()
    return first[0].strip() if first else None


def describe() -> dict[str, object]:
    """What ``results.json`` keeps under ``_meta`` about the machine and the run."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": memory_gb(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": mosquitto_version(),
        "load_average_at_start": [round(x, 2) for x in load] if load is not None else None,
    }
