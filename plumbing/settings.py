"""Loading TOML config files into typed settings, validated once at start-up."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

MAX_CONFIG_BYTES = 1_048_576

S = TypeVar("S", bound="FileSettings")


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the key."""


class Section(BaseModel):
    """Base of every config table: unknown keys are an error, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class FileSettings(BaseSettings):
    """Settings read from a TOML file, with environment overrides.

    Environment variables win over the file: ``STOCKGATE_MQTT__URL`` sets ``[mqtt] url``.
    """

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix="STOCKGATE_",
        env_nested_delimiter="__",
        use_attribute_docstrings=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first, so it overrides what the file (passed as init kwargs) says.
        return (env_settings, init_settings)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror}") from err
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err


def describe(err: ValidationError) -> str:
    """One line per problem, each naming the key path."""
    lines = []
    for problem in err.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)


def load(cls: type[S], path: Path | None = None, **values: Any) -> S:
    """Build settings of ``cls`` from a TOML file (if given) plus explicit values.

    Raises:
        ConfigError: the file is unreadable or a key is unknown or invalid.
    """
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    data.update(values)
    try:
        return cls(**data)
    except ValidationError as err:
        source = str(path) if path is not None else "config"
        raise ConfigError(f"{source}: invalid config\n{describe(err)}") from err


class MqttSettings(Section):
    """``[mqtt]``: the broker. ``mqtts://`` turns TLS on."""

    url: str = Field(default="mqtt://127.0.0.1:1883", pattern=r"^(mqtts?://[^/\s]+|embedded)$")
    """Broker address, `mqtt://host:port` or `mqtts://host:port` (TLS); the server also
    takes `embedded` (an in-process broker, single machine only)."""
    username: str | None = None
    """Broker user; each gateway has its own (`stockgate server broker-config` makes them)."""
    password: str | None = None
    """Broker password; prefer the environment (`STOCKGATE_MQTT__PASSWORD`) to the file."""
    ca_file: Path | None = None
    """CA certificate for `mqtts://`; the system store when unset."""
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    """MQTT keepalive; the broker publishes the last will after 1.5 times this."""
    client_id: str | None = Field(default=None, max_length=64)
    """MQTT client id; defaults to one derived from the gateway id (edge) or
    `stockgate-server` (server)."""

    @property
    def host(self) -> str:
        return self._split()[0]

    @property
    def port(self) -> int:
        return self._split()[1]

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    def _split(self) -> tuple[str, int]:
        if self.url == "embedded":
            raise ConfigError("the embedded broker has no URL until it is started")
        scheme, rest = self.url.split("://", 1)
        host, _, port = rest.rpartition(":")
        if not host:
            return rest, 8883 if scheme == "mqtts" else 1883
        return host.strip("[]"), int(port)
