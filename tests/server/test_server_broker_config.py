"""The broker's ACL and password file are made from the registry; the shipped files agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from server_helpers import make_settings

from plumbing.settings import load
from server.config.broker import (
    DEFAULT_SERVER_USER,
    BrokerConfigError,
    acl_text,
    write_broker_files,
)
from server.config.settings import ServerSettings
from wire.models import MAX_PAYLOAD_BYTES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GATEWAYS = [
    {"id": "gw-a", "site": "wh1", "read_points": ["wh1.dock.1"]},
    {"id": "gw-c", "site": "wh2", "read_points": ["wh2.dock.1"]},
]


def test_the_shipped_acl_is_the_one_made_from_the_example_registry() -> None:
    example = load(ServerSettings, DEPLOY / "server.example.toml")
    assert (DEPLOY / "mosquitto.acl").read_text() == acl_text(example, [DEFAULT_SERVER_USER])


def test_the_shipped_broker_config_bounds_clients() -> None:
    conf = (DEPLOY / "mosquitto.conf").read_text()
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert settings["use_username_as_clientid"] == "true"
    assert settings["allow_anonymous"] == "false"
    assert MAX_PAYLOAD_BYTES < int(settings["max_packet_size"]) < 2 * MAX_PAYLOAD_BYTES
    assert int(settings["max_queued_bytes"]) > 0
    assert settings["listener"] == "8883"


def test_each_gateway_gets_only_its_own_topics() -> None:
    acl = acl_text(make_settings("sqlite+aiosqlite:///x.db", gateways=GATEWAYS), ["srv"])
    blocks = {
        block.split("\n", 1)[0]: block for block in acl.split("\n\n") if block.startswith("user")
    }
    assert "topic write stockgate/v1/wh2/gw-c/events" in blocks["user gw-c"]
    assert "+" not in blocks["user gw-c"]
    assert "#" not in blocks["user gw-c"]
    assert "pattern" not in acl


def test_passwords_are_hashed_and_kept_across_runs(tmp_path: Path) -> None:
    settings = make_settings("sqlite+aiosqlite:///x.db", gateways=GATEWAYS)
    first = write_broker_files(settings, tmp_path)
    passwords = {user: env.read_text() for user, env in first.credentials.items()}
    passwd = first.passwd.read_text()
    assert set(passwords) == {DEFAULT_SERVER_USER, "gw-a", "gw-c"}
    for line in passwd.splitlines():
        user, _, hashed = line.partition(":")
        assert hashed.startswith("$"), "mosquitto_passwd hashes every password"
        assert hashed not in passwords[user]
    again = write_broker_files(settings, tmp_path)
    assert {user: env.read_text() for user, env in again.credentials.items()} == passwords
    assert re.findall(r"^[^:]+", again.passwd.read_text(), re.M) == [
        "stockgate-server",
        "gw-a",
        "gw-c",
    ]


def test_no_registry_no_broker_config(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError, match="no \\[\\[gateways\\]\\]"):
        write_broker_files(make_settings("sqlite+aiosqlite:///x.db"), tmp_path)
    with pytest.raises(BrokerConfigError, match="same name as a gateway"):
        write_broker_files(
            make_settings("sqlite+aiosqlite:///x.db", gateways=GATEWAYS), tmp_path, ["gw-a"]
        )
