"""Bearer API keys with roles and sites: viewers read, operators and admins also write.

Roles: ``viewer`` reads; ``operator`` also changes stock (and orders, alerts); ``admin``
also changes master data. A key with ``sites = [...]`` sees and changes only those sites:
lists are narrowed to them (``server.store.sites.in_sites``), and a request that names a
location, read point or row of another site gets 403 (``check_locations``,
``check_site``). Global master data (items, item categories) is not of any site: reading it
needs a viewer key, changing it an admin key without a site restriction (``GlobalAdmin``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.api.context import SCOPE_PRINCIPAL, ApiContext, Principal, get_context
from server.config.settings import ROLE_RANK, Role
from server.store.sites import site_of

bearer = HTTPBearer(auto_error=False, description="An API key from `[[api.keys]]`.")


def require(role: Role, *, all_sites: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys of ``role`` or a higher one.

    Missing or unknown keys get 401 (with ``WWW-Authenticate: Bearer``); a known key with
    too low a role gets 403, and so does a key restricted to sites when ``all_sites``.
    """

    async def dependency(
        request: Request,
        context: Annotated[ApiContext, Depends(get_context)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        internal = request.scope.get(SCOPE_PRINCIPAL)
        if isinstance(internal, Principal):
            # The console calling in-process for a signed-in person: the same role and
            # site checks apply to their key's principal.
            return _admitted(internal, role, all_sites=all_sites)
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = context.keys.find(credentials.credentials)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return _admitted(principal, role, all_sites=all_sites)

    return dependency


def _admitted(principal: Principal, role: Role, *, all_sites: bool) -> Principal:
    """``principal`` if its role and sites suffice, else 403 saying what is needed."""
    if ROLE_RANK[principal.role] < ROLE_RANK[role]:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"a {principal.role} key may not do this; it needs {role} or higher",
        )
    if all_sites and principal.sites:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "a key restricted to sites may not do this; it needs a key for all sites",
        )
    return principal


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
GlobalAdmin = Annotated[Principal, Depends(require("admin", all_sites=True))]
"""An admin key without a site restriction (global master data)."""
Context = Annotated[ApiContext, Depends(get_context)]


def check_site(principal: Principal, site: str | None, what: str = "site") -> None:
    """403 unless ``principal`` may see and change ``site``.

    Args:
        principal: the caller.
        site: a site id; None stands for something of no site (only keys for all sites).
        what: names the thing in the message (``"location 'wh2.a'"``).
    """
    if principal.allows(site):
        return
    shown = f"{what} of site {site!r}" if site is not None else f"{what} of no site"
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"this key is restricted to sites {sorted(principal.sites)}; {shown} is outside them",
    )


def check_locations(principal: Principal, *locations: str | None) -> None:
    """403 unless ``principal`` may touch the site of every location given (None skipped)."""
    for location in locations:
        if location is not None:
            check_site(principal, site_of(location), f"location {location!r}")
