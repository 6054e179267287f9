"""`stockgate demo --duration 30`, run as a user runs it: a separate process."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

STOCKGATE = Path(sys.executable).parent / "stockgate"
DEMO_TIMEOUT_S = 90


def test_demo_runs_answers_the_api_and_ends_with_the_ground_truth() -> None:
    proc = subprocess.Popen(
        [str(STOCKGATE), "demo", "--duration", "30", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    api: str | None = None
    key: str | None = None
    answers: dict[str, int] = {}
    console: str | None = None
    names: set[str] = set()
    receiving: str | None = None
    sign_in: httpx.Response | None = None
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    try:
        for line in proc.stdout:
            lines.append(line)
            if match := re.search(r"API\s+(http://\S+)/api/v1", line):
                api = match.group(1)
            if match := re.search(r"console\s+(http://\S+/)\s", line):
                console = match.group(1)
            if match := re.search(r"viewer key\s+(\S+)", line):
                key = match.group(1)
            if api and key and not answers and "has left the read zone" in line:
                # While it runs, the API answers with the key the demo printed.
                headers = {"Authorization": f"Bearer {key}"}
                for route in ("/api/v1/stock", "/api/v1/movements"):
                    answers[route] = httpx.get(api + route, headers=headers, timeout=5).status_code
                items = httpx.get(api + "/api/v1/items", headers=headers, timeout=5).json()
                names = {item["name"] for item in items["items"]}
                where = httpx.get(
                    api + "/api/v1/locations/wh1.receiving", headers=headers, timeout=5
                )
                receiving = where.json().get("name")
                if console is not None:
                    sign_in = httpx.get(console, timeout=5, follow_redirects=True)  # to sign-in
            assert time.monotonic() < deadline, "demo ran too long:\n" + "".join(lines)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    output = "".join(lines)
    assert code == 0, output
    assert answers == {"/api/v1/stock": 200, "/api/v1/movements": 200}, output
    assert "stock matches the ground truth" in output
    # The scenario's items were loaded: their names, not "Unreviewed item <GTIN>".
    assert names, output
    assert not any(name.startswith("Unreviewed") for name in names), names
    # And its locations have their names (the read point's inbound location included).
    assert receiving == "Receiving dock", output
    assert "7 location(s) named" in output
    assert sign_in is not None, output
    assert sign_in.status_code == 200
    assert 'name="key"' in sign_in.text
    table = re.findall(r"^(\d{14})\s.*\s(wh1\.\S+)\s+(\d+)\s+(\d+)\s*$", output, re.MULTILINE)
    assert table, output
    assert all(on_hand == expected for _, _, on_hand, expected in table), output
    assert "0 of them in the ledger" in output
    # Beside the door, a shelf reader and a handheld at work, and what they did.
    assert re.search(r"shelf\s+wh1\.shelf\.1 over wh1\.a01\.b01: reader shelf1 on 127", output)
    assert re.search(r"handheld\s+handheld-1 on /dev/", output), output
    assert "handheld-1 scans ]C0CMD:PICK" in output
    assert re.search(r"shelf wh1\.shelf\.1: take: tomatoes #\d+", output), output
    # The picked case went to the pick zone, the stolen one left the shelf's books.
    rows = {(location, gtin): int(on_hand) for gtin, location, on_hand, _ in table}
    assert rows[("wh1.staging", "10614141000125")] == 1
    assert rows[("wh1.a01.b01", "10614141000132")] == 2
    assert re.search(
        r"wh1\.shelf\.1 wh1\.a01\.b01 10614141000132: missing 1 \(expected 1\)$",
        output,
        re.MULTILINE,
    ), output


def test_demo_refuses_a_duration_too_short_for_its_scenario() -> None:
    result = subprocess.run(
        [str(STOCKGATE), "demo", "--duration", "5", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--duration must be at least" in result.stdout
