"""``/docs`` (Swagger UI) and ``/redoc`` served with assets from an installed package.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, which leaves a blank page on
a site network without Internet access. The ``fastapi-offline`` distribution ships the same
assets (MIT licensed, the licences of Swagger UI and ReDoc travel with it); they are served
from its package folder under ``/docs/static``, with no other code of it used.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PACKAGE: Final = "fastapi_offline"
STATIC_PATH: Final = "/docs/static"
TITLE: Final = "stockgate API"


def assets_dir() -> Path:
    """The folder of the packaged Swagger UI and ReDoc files."""
    return Path(str(files(ASSETS_PACKAGE).joinpath("static")))


def install(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their static assets to ``app``."""
    app.mount(STATIC_PATH, StaticFiles(directory=assets_dir()), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{TITLE} - Swagger UI",
            swagger_js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PATH}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{TITLE} - ReDoc",
            redoc_js_url=f"{STATIC_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_PATH}/favicon.png",
            with_google_fonts=False,
        )
