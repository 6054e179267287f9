"""``stockgate --version`` and what an edge command imports."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from typer.testing import CliRunner

from bench.broker import free_port
from plumbing import software_version
from stockgate.cli import app


def test_version_prints_the_installed_release() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"stockgate {importlib.metadata.version('stockgate')}"
    assert software_version() == importlib.metadata.version("stockgate")


def test_an_edge_command_imports_no_server_module(tmp_path) -> None:
    """A gateway has no server stack: the edge path of the CLI must not reach for it."""
    config = tmp_path / "edge.toml"
    # Nothing listens on the broker's port: the check runs to its end and fails.
    config.write_text(
        f'[gateway]\nid = "gw-1"\nsite = "wh1"\n[mqtt]\nurl = "mqtt://127.0.0.1:{free_port()}"\n'
    )
    probe = (
        "import sys\n"
        "from stockgate.cli import app\n"
        "try:\n"
        f"    app(['edge', '--config', {str(config)!r}, '--check'])\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "loaded = sorted(m for m in sys.modules if m == 'server' or m.startswith('server.'))\n"
        "loaded += [m for m in ('fastapi', 'sqlalchemy') if m in sys.modules]\n"
        "print(code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    # Exit 1: the check ran (the broker is not there) and the server was never imported.
    assert done.stdout.strip().endswith("1 []"), done.stdout + done.stderr
    assert "FAIL" in done.stdout
