"""`--log-format json`: one JSON object per log line, from the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

STOCKGATE = Path(sys.executable).parent / "stockgate"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STOCKGATE), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    # `edge --check` logs what it checks; an unreachable reader and broker make warnings.
    config = tmp_path / "edge.toml"
    config.write_text(
        '[gateway]\nid = "gw-1"\nsite = "wh1"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:9"\n'
        f'[buffer]\npath = "{tmp_path / "outbox.db"}"\n'
        '[[llrp]]\nname = "dock1"\nhost = "127.0.0.1"\nport = 9\n',
        encoding="utf-8",
    )
    done = run("--log-format", "json", "edge", "--config", str(config), "--check")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines, done
    records = [json.loads(line) for line in lines]
    for record in records:
        assert set(record) >= {"time", "level", "logger", "message"}
        assert record["time"].endswith("Z")
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}


def test_an_unknown_log_format_is_refused_with_the_choices() -> None:
    done = run("--log-format", "xml", "sim", "faults")
    assert done.returncode == 2
    assert "xml" in done.stderr
    assert "json" in done.stderr
