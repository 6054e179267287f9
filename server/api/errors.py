"""Error responses: store failures are 503 with a reason, never a bare 500; refusals
(``server.errors.Refused``) are 4xx responses that say why."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from server.errors import (
    Conflict,
    Forbidden,
    ImportRejected,
    Invalid,
    NotFound,
    Refused,
    StoreError,
)

log = logging.getLogger(__name__)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": f"database unavailable: {exc}"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


STATUS: Mapping[type[Refused], int] = {
    Forbidden: status.HTTP_403_FORBIDDEN,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Invalid: status.HTTP_422_UNPROCESSABLE_CONTENT,
    ImportRejected: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


async def _refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    body: dict[str, object] = {"detail": exc.reason}
    if isinstance(exc, Invalid):
        body["field"] = exc.field
    if isinstance(exc, ImportRejected):
        body["errors"] = [
            {"row": error.row, "field": error.field, "message": error.message}
            for error in exc.errors
        ]
    code = next(
        (code for kind, code in STATUS.items() if isinstance(exc, kind)),
        status.HTTP_400_BAD_REQUEST,
    )
    return JSONResponse(body, status_code=code)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(Refused, _refused)
