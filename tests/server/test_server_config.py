"""Server config: the stable keys, refused placeholder keys, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from plumbing.settings import ConfigError, load
from server.config.settings import ServerSettings

GOOD_KEY = "k3y-0123456789abcdef"

DESIGN_EXAMPLE = """
[mqtt]
url = "mqtt://127.0.0.1:1883"
[database]
url = "sqlite+aiosqlite:///stockgate.db"
[api]
host = "127.0.0.1"
port = 8000
[[api.keys]]
key = "{key}"
role = "admin"
[[read_points]]
id = "wh1.dock.1"
inbound_location = "wh1.receiving"
outbound = "ship"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text)
    return path


def test_design_example_loads_with_a_real_key(tmp_path: Path) -> None:
    settings = load(ServerSettings, write(tmp_path, DESIGN_EXAMPLE.format(key=GOOD_KEY)))
    assert settings.database.url == "sqlite+aiosqlite:///stockgate.db"
    assert settings.api.port == 8000
    assert settings.api.key_names() == ["admin-1"]
    point = settings.read_point_table()["wh1.dock.1"]
    assert (point.inbound_location, point.outbound) == ("wh1.receiving", "ship")
    assert GOOD_KEY not in repr(settings)  # keys are secrets


def test_the_placeholder_key_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(ServerSettings, write(tmp_path, DESIGN_EXAMPLE.format(key="change-me")))
    message = str(caught.value)
    assert "api.keys.0.key" in message
    assert "shorter than 12 characters" in message
    assert "change-me" in message  # names the placeholder, so the operator knows why
    assert "secrets.token_urlsafe" in message


def test_an_empty_key_list_is_refused(tmp_path: Path) -> None:
    text = '[api]\nport = 8000\n[[read_points]]\nid = "a"\ninbound_location = "wh1.r"\n'
    with pytest.raises(ConfigError, match=r"at least one \[\[api.keys\]\] entry"):
        load(ServerSettings, write(tmp_path, text))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("[api]\nbogus = 1\n", "api.bogus: Extra inputs are not permitted"),
        ('[database]\nurl = "mysql://x"\n', "database.url"),
        (
            '[[read_points]]\nid = "p"\ninbound_location = "wh1..x"\n',
            "read_points.0.inbound_location",
        ),
        (
            '[[read_points]]\nid = "p"\ninbound_location = "a"\n'
            '[[read_points]]\nid = "p"\ninbound_location = "b"\n',
            "read point 'p' is defined twice",
        ),
        ('[[read_points]]\nid = "p"\ninbound_location = "a"\noutbound = "fly"\n', "outbound"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, extra: str, expected: str) -> None:
    base = f'[[api.keys]]\nkey = "{GOOD_KEY}"\nrole = "viewer"\n'
    if extra.startswith("[api]"):
        base = extra.replace(
            "[api]\n", f'[api]\nkeys = [{{key = "{GOOD_KEY}", role = "viewer"}}]\n'
        )
        extra = ""
    with pytest.raises(ConfigError) as caught:
        load(ServerSettings, write(tmp_path, base + extra))
    assert expected in str(caught.value)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = (
        f'[[api.keys]]\nkey = "{GOOD_KEY}"\nrole = "viewer"\n'
        f'[[api.keys]]\nkey = "{GOOD_KEY}"\nrole = "admin"\n'
    )
    with pytest.raises(ConfigError, match="same key"):
        load(ServerSettings, write(tmp_path, text))


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKGATE_DATABASE__URL", "postgresql+asyncpg://db.example/stock")
    settings = load(ServerSettings, write(tmp_path, DESIGN_EXAMPLE.format(key=GOOD_KEY)))
    assert settings.database.url == "postgresql+asyncpg://db.example/stock"
