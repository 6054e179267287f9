"""Bearer API keys with roles: viewers read, operators and admins also write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.api.context import ApiContext, Principal, get_context
from server.config import ROLE_RANK, Role

bearer = HTTPBearer(auto_error=False, description="An API key from `[[api.keys]]`.")


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys of ``role`` or a higher one.

    Missing or unknown keys get 401 (with ``WWW-Authenticate: Bearer``); a known key with
    too low a role gets 403.
    """

    async def dependency(
        context: Annotated[ApiContext, Depends(get_context)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
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
        if ROLE_RANK[principal.role] < ROLE_RANK[role]:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a {principal.role} key may not do this; it needs {role} or higher",
            )
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Context = Annotated[ApiContext, Depends(get_context)]
