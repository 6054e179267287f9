"""The dependency lock (`requirements.lock`) agrees with pyproject.toml.

`make test` and the README install from the lock with `--require-hashes`, so every install
gets the same versions, byte for byte. A dependency added or re-bounded in pyproject.toml
without `make lock` would make that install fail or drift; this test names the one at fault.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _pins() -> dict[str, tuple[str, int]]:
    """Name -> (version, number of hashes) for each pinned line of the lock."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            pins[name] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines.extend(extra)
    return [
        requirement
        for requirement in map(Requirement, lines)
        if canonicalize_name(requirement.name) != "stockgate"
    ]


def test_every_declared_dependency_is_pinned_within_its_bounds() -> None:
    pins = _pins()
    for requirement in _declared():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement}: run `make lock`"
        )


def test_every_pin_carries_hashes() -> None:
    pins = _pins()
    assert pins, "requirements.lock pins nothing"
    unhashed = sorted(name for name, (_, hashes) in pins.items() if hashes == 0)
    assert not unhashed, f"pins without --hash in requirements.lock: {unhashed}"


def test_h11_is_past_the_request_smuggling_fix() -> None:
    # h11 < 0.16 accepts malformed chunked bodies (CVE-2025-43859); uvicorn serves through it.
    version = _pins()["h11"][0]
    assert tuple(int(part) for part in version.split(".")[:2]) >= (0, 16), version
