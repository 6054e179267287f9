"""MQTT topic names of wire contract v1 (docs/architecture.md §5)."""

from __future__ import annotations

import re

from wire.errors import WireError

PREFIX = "stockgate/v1"
EVENTS_SUBSCRIPTION = f"{PREFIX}/+/+/events"
SHARED_EVENTS_SUBSCRIPTION = f"$share/stockgate/{EVENTS_SUBSCRIPTION}"
STATUS_SUBSCRIPTION = f"{PREFIX}/+/+/status"

# Site and gateway ids become topic levels, so they may not hold MQTT wildcards or slashes.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ID = re.compile(ID_PATTERN)
_GATEWAY_TOPIC = re.compile(rf"^{PREFIX}/([^/]+)/([^/]+)/(events|ack|status|config)$")


class TopicError(WireError):
    """A topic that is not one of ours."""


def _check(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise TopicError(f"{kind} id {value!r} does not match {ID_PATTERN}")
    return value


def events(site: str, gateway: str) -> str:
    return f"{PREFIX}/{_check('site', site)}/{_check('gateway', gateway)}/events"


def ack(site: str, gateway: str) -> str:
    return f"{PREFIX}/{_check('site', site)}/{_check('gateway', gateway)}/ack"


def status(site: str, gateway: str) -> str:
    return f"{PREFIX}/{_check('site', site)}/{_check('gateway', gateway)}/status"


def config(site: str, gateway: str) -> str:
    return f"{PREFIX}/{_check('site', site)}/{_check('gateway', gateway)}/config"


def alerts(site: str) -> str:
    return f"{PREFIX}/{_check('site', site)}/alerts"


def parse_gateway_topic(topic: str) -> tuple[str, str, str]:
    """Split a per-gateway topic into (site, gateway, kind).

    Raises:
        TopicError: the topic is not a stockgate v1 gateway topic.
    """
    match = _GATEWAY_TOPIC.match(topic)
    if match is None:
        raise TopicError(f"not a stockgate v1 gateway topic: {topic!r}")
    site, gateway, kind = match.groups()
    return _check("site", site), _check("gateway", gateway), kind
