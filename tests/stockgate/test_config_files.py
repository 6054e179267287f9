"""The shipped example configs load, and the README's config reference is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import EdgeSettings
from plumbing.settings import ConfigError, load
from server.config.settings import ServerSettings
from stockgate.config_reference import readme_section, reference

ROOT = Path(__file__).resolve().parents[2]


def test_example_configs_are_valid() -> None:
    edge = load(EdgeSettings, ROOT / "deploy" / "edge.example.toml")
    server = load(ServerSettings, ROOT / "deploy" / "server.example.toml")
    assert edge.portals[0].reader == edge.llrp[0].name
    assert server.read_points[0].outbound == "ship"


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[gateway]\nid = "gw1"\nsite = "wh1"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match=r"gateway\.colour"):
        load(EdgeSettings, config)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[gateway]\nid = "gw1"\nsite = "wh1"\n')
    monkeypatch.setenv("STOCKGATE_MQTT__URL", "mqtt://broker.example:1884")
    settings = load(EdgeSettings, config)
    assert (settings.mqtt.host, settings.mqtt.port) == ("broker.example", 1884)


def test_readme_config_reference_is_generated_from_the_models() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_section(readme) == reference(), (
        "README config reference is stale: run `.venv/bin/python -m stockgate.config_reference"
        " --write`"
    )
