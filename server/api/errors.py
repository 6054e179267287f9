"""Error responses: store failures are 503 with a reason, never a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from server.errors import StoreError

log = logging.getLogger(__name__)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": f"database unavailable: {exc}"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(StoreError, _store_error)
