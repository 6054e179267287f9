"""The ground floor the edge agent and the server both stand on: the MQTT client, the
settings base and config-file loading, the embedded broker, logging set-up and the
software version. It imports only ``wire``; nothing here knows the edge or the server
(docs/architecture.md §2)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def software_version() -> str:
    """The installed distribution's version (``pyproject.toml``), as every status reports it.

    A source tree run without installing has no distribution metadata: ``0+unknown`` then,
    so a status never claims a release it is not.
    """
    try:
        return version("stockgate")
    except PackageNotFoundError:
        return "0+unknown"
