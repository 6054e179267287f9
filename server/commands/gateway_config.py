"""Remote configuration of gateways: recorded, versioned, and kept on their config topics.

``record_config`` checks a tuning document against the edge's own settings models
(``edge.remote_config.validate_tuning``: the same partial models the gateway checks it
with, so a field the edge gains is accepted here the day it exists) and stores it as the
gateway's next version, one row per version, never edited. ``ConfigRelay`` publishes the
newest version of each gateway, retained with QoS 1, on ``stockgate/v1/{site}/{gateway}/config``:
at once after a change, and again for every gateway after each (re)connect, so a broker
that lost its retained messages gets them back. A gateway ignores a version it runs, so
publishing again is harmless, and several server instances may all do it.

What the gateway made of it comes back in its status (``config_version``,
``config_rejected``): the cross-table checks (a portal's reader exists, sides apart) are
the gateway's, against its local file, which the server does not have.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from edge.remote_config import RemoteConfigError, validate_tuning
from server.errors import Conflict, Invalid, PublishFailed, StoreError
from server.queries.views import GatewayConfigView
from server.store.database import Store, refused_on_conflict
from server.store.schema.core import gateway_configs, gateways
from wire import topics
from wire.models import GatewayConfig

log = logging.getLogger(__name__)

RetainedPublisher = Callable[[str, bytes], Awaitable[None]]
"""Publishes a payload retained with QoS 1; raises ``PublishFailed`` when it cannot."""


def tuning(settings: Mapping[str, object]) -> dict[str, list[dict[str, Any]]]:
    """``settings`` checked by the edge's models and normalised.

    Raises:
        Invalid: a table, key or value the edge would refuse (the reason names it).
    """
    try:
        return validate_tuning(settings)
    except RemoteConfigError as err:
        raise Invalid("settings", str(err)) from err


async def known_site(conn: AsyncConnection, gateway: str) -> str | None:
    """The site of a gateway that has reported a status, else None."""
    found = await conn.execute(sa.select(gateways.c.site).where(gateways.c.id == gateway))
    return found.scalar_one_or_none()


async def _running(conn: AsyncConnection, gateway: str) -> int:
    """The config version the gateway last reported running (0: none, or never reported)."""
    found = await conn.execute(
        sa.select(gateways.c.status, gateways.c.online_status).where(gateways.c.id == gateway)
    )
    row = found.first()
    if row is None:
        return 0
    versions = [
        status.get("config_version") for status in (row.status, row.online_status) if status
    ]
    return max((v for v in versions if isinstance(v, int)), default=0)


async def record_config(
    conn: AsyncConnection,
    gateway: str,
    site: str,
    settings: Mapping[str, object],
    actor: str,
    now: datetime,
) -> GatewayConfigView:
    """Store ``settings`` as the gateway's next configuration version.

    Raises:
        Invalid: the settings would be refused by the edge's models.
        Conflict: another change of the same gateway took the version first.
    """
    clean = tuning(settings)
    latest = await conn.execute(
        sa.select(sa.func.max(gateway_configs.c.version)).where(
            gateway_configs.c.gateway == gateway
        )
    )
    # Above what the gateway runs too: after a restore from a backup the table may be
    # behind the gateway, which refuses any version not above its own.
    version = max(latest.scalar_one_or_none() or 0, await _running(conn, gateway)) + 1
    row = {
        "gateway": gateway,
        "version": version,
        "site": site,
        "settings": clean,
        "created_at": now,
        "created_by": actor[:256],
    }
    async with refused_on_conflict(
        Conflict(f"gateway {gateway}: another change took version {version}; send it again")
    ):
        await conn.execute(gateway_configs.insert().values(**row))
    return GatewayConfigView.model_validate(row)


async def latest_config(conn: AsyncConnection, gateway: str) -> GatewayConfigView | None:
    """The newest configuration of ``gateway``, or None."""
    rows = await conn.execute(
        sa.select(gateway_configs)
        .where(gateway_configs.c.gateway == gateway)
        .order_by(gateway_configs.c.version.desc())
        .limit(1)
    )
    row = rows.first()
    return GatewayConfigView.model_validate(row._mapping) if row is not None else None


async def latest_configs(conn: AsyncConnection) -> list[GatewayConfigView]:
    """The newest configuration of every gateway that has one."""
    newest = (
        sa.select(
            gateway_configs.c.gateway, sa.func.max(gateway_configs.c.version).label("version")
        )
        .group_by(gateway_configs.c.gateway)
        .subquery()
    )
    rows = await conn.execute(
        sa.select(gateway_configs)
        .join(
            newest,
            sa.and_(
                gateway_configs.c.gateway == newest.c.gateway,
                gateway_configs.c.version == newest.c.version,
            ),
        )
        .order_by(gateway_configs.c.gateway)
    )
    return [GatewayConfigView.model_validate(row._mapping) for row in rows]


def message(config: GatewayConfigView) -> tuple[str, bytes]:
    """The config topic and payload carrying ``config``."""
    payload = GatewayConfig(
        gateway=config.gateway,
        site=config.site,
        config_version=config.version,
        issued_at=config.created_at,
        issued_by=config.created_by,
        settings=dict(config.settings),
    )
    return topics.config(config.site, config.gateway), payload.model_dump_json().encode()


class ConfigRelay:
    """Keeps every gateway's newest configuration on its retained config topic.

    Args:
        store: the database.
        publish: publishes retained (the server's MQTT client).
    """

    def __init__(self, store: Store, publish: RetainedPublisher) -> None:
        self._store = store
        self._publish = publish
        self._wake = asyncio.Event()
        self.published = 0

    async def publish(self, config: GatewayConfigView) -> bool:
        """Publish one configuration now; False when the broker did not take it (it is
        published again after the next connect)."""
        topic, payload = message(config)
        try:
            await self._publish(topic, payload)
        except PublishFailed as err:
            log.warning(
                "config %d of %s not published yet: %s", config.version, config.gateway, err
            )
            return False
        self.published += 1
        return True

    def poke(self) -> None:
        """Publish every gateway's newest configuration again (after a connect)."""
        self._wake.set()

    async def on_connect(self) -> None:
        self.poke()

    async def run(self) -> None:
        """Republish when poked, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                async with self._store.read("reading gateway configurations") as conn:
                    configs = await latest_configs(conn)
            except StoreError as err:
                log.error("gateway configurations not republished: %s", err)
                continue
            for config in configs:
                await self.publish(config)
