"""``/api/v1/gateways``: the fleet view, and each gateway's remote configuration.

``GET /api/v1/gateways`` lists every gateway with its last status and, from its last
online status, what the fleet view needs (software and config versions, uptime, outbox
depth and oldest event, disk, CPU temperature and throttling, readers and antennas).
``PUT /api/v1/gateways/{id}/config`` (admin) records a new tuning for a gateway as its next
version and publishes it, retained, on the gateway's config topic; ``GET`` the same path
shows the newest version beside the one the gateway reports running.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from server.api.auth import Admin, Context, Viewer, check_site
from server.api.context import ApiContext
from server.api.params import MAX_PAGE
from server.commands.gateway_config import ConfigRelay, known_site, latest_config, record_config
from server.errors import Invalid, NotFound
from server.queries.lists import fleet_view, list_gateways
from server.queries.views import GatewayConfigView, GatewayView
from server.store.schema.core import gateways
from wire.models import MAX_CONFIG_BYTES, now_utc
from wire.topics import ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["gateways"])

GatewayId = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]


class GatewayList(BaseModel):
    items: list[GatewayView]


class ConfigChange(BaseModel):
    """A new tuning of one gateway: tables of the edge config (``llrp``, ``portals``,
    ``zones``, ``dedupe``), each a list of entries naming the reader or read point they
    change; only the keys given change. Identity, credentials, the broker address, a
    reader's address and a door's lights and photo-eye port stay in the gateway's file."""

    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] = Field(max_length=16)
    site: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    """The gateway's site; needed only for a gateway that has never reported a status."""


class ConfigState(BaseModel):
    gateway: str
    site: str
    latest: GatewayConfigView | None
    """The newest configuration recorded for the gateway."""
    running: int | None
    """The version the gateway reported running in its latest status."""
    rejected: dict[str, Any] | None
    """What the gateway refused last, and why (from its status)."""
    published: bool | None = None
    """After a change: whether the broker took it now (if not, it is published again
    when the server reconnects; the gateway picks it up from the retained topic)."""


def get_relay(request: Request) -> ConfigRelay | None:
    return cast(ConfigRelay | None, getattr(request.app.state, "config_relay", None))


@router.get("/gateways", response_model=GatewayList)
async def get_gateways(context: Context, principal: Viewer) -> GatewayList:
    """Every gateway that has reported a status (at most 1000), by id; of the key's sites."""
    async with context.store.read("listing gateways") as conn:
        found = await list_gateways(conn, MAX_PAGE)
    return GatewayList(items=[gateway for gateway in found if principal.allows(gateway.site)])


async def _state(context: ApiContext, gateway: str, site: str) -> ConfigState:
    """The newest configuration beside what the gateway's latest status says it runs."""
    async with context.store.read(f"reading the configuration of {gateway}") as conn:
        latest = await latest_config(conn, gateway)
        row = (await conn.execute(gateways.select().where(gateways.c.id == gateway))).first()
    view = fleet_view({**row._mapping, "latest": None}) if row is not None else None
    return ConfigState(
        gateway=gateway,
        site=site,
        latest=latest,
        running=view.config_version if view is not None else None,
        rejected=view.config_rejected if view is not None else None,
    )


@router.get("/gateways/{gateway_id}/config", response_model=ConfigState)
async def get_gateway_config(
    gateway_id: GatewayId, context: Context, principal: Viewer
) -> ConfigState:
    """The gateway's newest configuration and the version it reports running."""
    async with context.store.read(f"reading the configuration of {gateway_id}") as conn:
        site = await known_site(conn, gateway_id)
        latest = await latest_config(conn, gateway_id)
    if site is None and latest is not None:
        site = latest.site
    if site is None:
        raise NotFound(f"gateway {gateway_id!r} has neither reported nor been configured")
    check_site(principal, site, f"gateway {gateway_id!r}")
    return await _state(context, gateway_id, site)


@router.put(
    "/gateways/{gateway_id}/config",
    response_model=ConfigState,
    responses={
        403: {"description": "The gateway is outside the key's sites."},
        409: {"description": "Another change took the same version; send it again."},
        422: {"description": "A table, key or value the gateway's settings models refuse."},
    },
)
async def put_gateway_config(
    gateway_id: GatewayId,
    change: ConfigChange,
    context: Context,
    principal: Admin,
    request: Request,
) -> ConfigState:
    """Record the gateway's next configuration and publish it on its config topic."""
    if len(change.model_dump_json()) > MAX_CONFIG_BYTES // 2:
        raise Invalid("settings", f"larger than {MAX_CONFIG_BYTES // 2} bytes")
    async with context.store.begin(f"recording a configuration of {gateway_id}") as conn:
        site = await known_site(conn, gateway_id)
        if site is None:
            previous = await latest_config(conn, gateway_id)
            site = previous.site if previous is not None else None
        if site is None:
            site = change.site
            if site is None:
                raise Invalid("site", f"gateway {gateway_id!r} has never reported: name its site")
        elif change.site is not None and change.site != site:
            raise Invalid("site", f"gateway {gateway_id!r} belongs to site {site!r}")
        check_site(principal, site, f"gateway {gateway_id!r}")
        recorded = await record_config(
            conn, gateway_id, site, change.settings, principal.name, now_utc()
        )
    relay = get_relay(request)
    published = await relay.publish(recorded) if relay is not None else False
    state = await _state(context, gateway_id, site)
    return state.model_copy(update={"published": published})
