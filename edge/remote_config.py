"""Remote tuning of a gateway: the server's ``GatewayConfig`` merged over the local file.

What may be tuned remotely is data, not code: ``TUNABLE`` names the edge config's tables
of readers and read points, the key that identifies an entry, and the keys that stay in
the local file (the reader's address; a door's wiring to photo-eye and lights, which the
running GPIO set-up depends on). Every other key of those tables' settings models is
tunable, so a key added to ``LlrpSettings`` or ``PortalSettings`` (say a reader's
transmit power) is tunable the day it exists. ``[gateway]``, ``[mqtt]``, ``[buffer]``,
``[[scanners]]`` and the rest stay local: identity, credentials and the broker address
never come over the network.

A remote ``settings`` document holds, per table, a list of entries. An entry for an
existing reader or read point changes only the keys it gives; an entry for a new read
point must be complete. Entries are validated field by field against partial versions
of the edge's own models (``tuning_models``), which the server uses too before it
publishes; then the merged whole is validated as an ``EdgeSettings``, the model the
local file is loaded with, so cross-table rules (a portal's reader must exist, sides
apart, read points unique) judge the result and not the parts.

``RemoteConfig`` is the edge's bookkeeping: the version running, the last refusal and
why, and the last good document on disk (written atomically after it applied, read at
start-up so a gateway that restarts without a broker runs its last tuning). Versions
only go forward: a message for another gateway or site, or with a version not above the
running one, is refused (an equal version is the retained copy of what runs: ignored).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from edge.config import (
    DedupeSettings,
    EdgeSettings,
    LlrpSettings,
    PortalSettings,
    ZoneSettings,
)
from edge.errors import EdgeError
from plumbing.settings import describe
from wire.models import MAX_CONFIG_BYTES, ConfigRejection, GatewayConfig, now_utc

log = logging.getLogger(__name__)

MAX_ENTRIES: Final = 64
"""Most entries per table in one remote document (the edge config's own bound)."""


@dataclass(frozen=True, slots=True)
class Tunable:
    """One table of the edge config that the server may tune."""

    model: type[BaseModel]
    key: str
    """The field that names an entry (a reader's ``name``, a read point's id)."""
    local: frozenset[str] = frozenset()
    """Keys only the local file sets."""


TUNABLE: Final[Mapping[str, Tunable]] = {
    "llrp": Tunable(LlrpSettings, "name", frozenset({"host", "port"})),
    "portals": Tunable(PortalSettings, "read_point", frozenset({"gpi_port", "lights"})),
    "zones": Tunable(ZoneSettings, "read_point"),
    "dedupe": Tunable(DedupeSettings, "read_point"),
}


class RemoteConfigError(EdgeError):
    """A remote configuration that cannot be applied; the message says what and why."""


def _partial(table: str, tunable: Tunable) -> type[BaseModel]:
    """``tunable.model`` with every field optional except the key, and no local keys.

    Field constraints (bounds, patterns, nested tables) are the model's own; model-level
    rules are judged on the merged ``EdgeSettings``.
    """
    fields: dict[str, Any] = {}
    for name, info in tunable.model.model_fields.items():
        if name in tunable.local:
            continue
        if name == tunable.key:
            fields[name] = (info.annotation, info)
            continue
        optional = copy.copy(info)
        optional.default = None
        optional.default_factory = None
        fields[name] = (cast(Any, info.annotation) | None, optional)
    model: type[BaseModel] = create_model(
        f"{tunable.model.__name__}Tuning",
        __config__=ConfigDict(extra="forbid", frozen=True),
        **fields,
    )
    return model


_MODELS: Final = {table: _partial(table, tunable) for table, tunable in TUNABLE.items()}


def tuning_models() -> Mapping[str, type[BaseModel]]:
    """The partial model of each tunable table (entries are checked against these)."""
    return _MODELS


def validate_tuning(settings: Mapping[str, object]) -> dict[str, list[dict[str, Any]]]:
    """Check a remote ``settings`` document entry by entry; return it normalised (JSON).

    Raises:
        RemoteConfigError: an unknown table, a local-only key, a value a model refuses,
            or one entry named twice; the message names the place.
    """
    problems: list[str] = []
    clean: dict[str, list[dict[str, Any]]] = {}
    for table, entries in settings.items():
        tunable = TUNABLE.get(table)
        if tunable is None:
            problems.append(f"{table}: not a table the server may tune (only {sorted(TUNABLE)})")
            continue
        if not isinstance(entries, list):
            problems.append(f"{table}: must be a list of tables")
            continue
        if len(entries) > MAX_ENTRIES:
            problems.append(f"{table}: more than {MAX_ENTRIES} entries")
            continue
        seen: set[str] = set()
        clean[table] = []
        for index, entry in enumerate(entries):
            where = f"{table}.{index}"
            if not isinstance(entry, dict):
                problems.append(f"{where}: must be a table")
                continue
            local = sorted(tunable.local & entry.keys())
            if local:
                problems.append(f"{where}: {', '.join(local)} only set in the gateway's file")
                continue
            try:
                checked = _MODELS[table].model_validate(entry)
            except ValidationError as err:
                problems.extend(f"{where}.{line.strip()}" for line in describe(err).splitlines())
                continue
            name = str(getattr(checked, tunable.key))
            if name in seen:
                problems.append(f"{where}: {tunable.key} {name!r} appears twice")
                continue
            seen.add(name)
            clean[table].append(checked.model_dump(mode="json", exclude_unset=True))
    if problems:
        raise RemoteConfigError("; ".join(problems))
    return clean


def merge(local: EdgeSettings, settings: Mapping[str, object]) -> EdgeSettings:
    """The local settings with the remote tuning applied, validated as a whole.

    Raises:
        RemoteConfigError: the tuning, or the merged whole, is not a valid edge config.
    """
    tuning = validate_tuning(settings)
    data = local.model_dump(mode="python")
    for table, entries in tuning.items():
        key = TUNABLE[table].key
        current: list[dict[str, Any]] = data[table]
        by_key = {entry[key]: entry for entry in current}
        for entry in entries:
            found = by_key.get(entry[key])
            if found is not None:
                found.update(entry)
            elif table == "llrp":
                raise RemoteConfigError(
                    f"llrp: reader {entry[key]!r} is not in the gateway's file (readers are "
                    "added there, with their address)"
                )
            else:
                current.append(entry)
                by_key[entry[key]] = entry
    try:
        return type(local)(**data)
    except ValidationError as err:
        problems = "; ".join(line.strip() for line in describe(err).splitlines())
        raise RemoteConfigError(f"the tuned config is not valid: {problems}") from err


@dataclass(frozen=True, slots=True)
class Applied:
    """A remote configuration accepted: the settings to run and the document they came from."""

    settings: EdgeSettings
    config: GatewayConfig


class RemoteConfig:
    """The remote configuration state of one gateway (see the module docstring).

    Args:
        local: the settings from the local file.
        path: where the last good document is kept; None keeps nothing on disk.
    """

    def __init__(self, local: EdgeSettings, path: Path | None) -> None:
        self.local = local
        self._path = path
        self.version: int | None = None
        """The version running (None: the local file alone)."""
        self.rejected: ConfigRejection | None = None
        """The last document refused, until a later one applies."""

    def load_saved(self) -> EdgeSettings:
        """The settings to start with: the last good document over the local file.

        A saved document that no longer fits (the local file changed under it) is
        reported as refused and the local file runs alone.
        """
        path = self._path
        if path is None or not path.exists():
            return self.local
        try:
            raw = path.read_bytes()[: MAX_CONFIG_BYTES + 1]
            applied = self._check(raw, saved=True)
        except (OSError, RemoteConfigError) as err:
            log.error("remote config: the saved one in %s is not used: %s", path, err)
            self.rejected = ConfigRejection(reason=f"saved config: {err}"[:2000], at=now_utc())
            return self.local
        self.version = applied.config.config_version
        log.info("remote config: version %d (saved) applied", self.version)
        return applied.settings

    def receive(self, payload: bytes) -> Applied | None:
        """Judge one message of the config topic; None when there is nothing to apply.

        A refusal is recorded in ``rejected`` (and logged); an empty payload (a cleared
        retained message) and the version already running are ignored.
        """
        if not payload:
            return None
        try:
            applied = self._check(payload, saved=False)
        except RemoteConfigError as err:
            version = _version_of(payload)
            if version is not None and version == self.version:
                return None
            log.error("remote config%s refused: %s", f" {version}" if version else "", err)
            self.rejected = ConfigRejection(
                config_version=version, reason=str(err)[:2000], at=now_utc()
            )
            return None
        return applied

    def applied(self, applied: Applied) -> None:
        """Record that ``applied`` runs now and keep it on disk as the last good one."""
        self.version = applied.config.config_version
        self.rejected = None
        if self._path is not None:
            try:
                _write_atomically(self._path, applied.config.model_dump_json().encode())
            except OSError as err:
                log.error("remote config: not saved to %s: %s", self._path, err)
        log.info("remote config: version %d applied", self.version)

    def _check(self, payload: bytes, *, saved: bool) -> Applied:
        if len(payload) > MAX_CONFIG_BYTES:
            raise RemoteConfigError(f"larger than {MAX_CONFIG_BYTES} bytes")
        try:
            config = GatewayConfig.model_validate_json(payload)
        except ValidationError as err:
            problems = "; ".join(line.strip() for line in describe(err).splitlines())
            raise RemoteConfigError(f"not a gateway config: {problems}") from err
        gateway = self.local.gateway
        if (config.gateway, config.site) != (gateway.id, gateway.site):
            raise RemoteConfigError(
                f"it is for gateway {config.gateway!r} of site {config.site!r}, "
                f"this is {gateway.id!r} of {gateway.site!r}"
            )
        running = self.version
        if not saved and running is not None and config.config_version <= running:
            if config.config_version == running:
                raise RemoteConfigError("the version running")
            raise RemoteConfigError(
                f"version {config.config_version} is older than the version running, {running}"
            )
        return Applied(merge(self.local, config.settings), config)


def _version_of(payload: bytes) -> int | None:
    try:
        data = json.loads(payload[:MAX_CONFIG_BYTES])
    except ValueError:
        return None
    version = data.get("config_version") if isinstance(data, dict) else None
    return version if isinstance(version, int) and version >= 1 else None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
