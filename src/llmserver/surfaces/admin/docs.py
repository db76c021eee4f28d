"""``/docs`` (Swagger UI) and ``/redoc`` with their JavaScript and CSS served by this process.

FastAPI's own pages load the assets from a CDN, which an offline LAN cannot reach. The files come
from the ``fastapi-offline`` package (MIT; Swagger UI is Apache-2.0, ReDoc MIT), found without
importing it. The pages, their assets and ``/openapi.json`` describe the API and serve no model,
so authentication lets them through (see ``http/middleware/auth.py``).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

logger = logging.getLogger("llmserver.docs")

ASSETS_PACKAGE = "fastapi_offline"
ASSETS_URL = "/docs-assets"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
#: Swagger UI would send the spec to an online validator and show its badge: off
SWAGGER_PARAMETERS = {"validatorUrl": None}


def assets_dir() -> Path | None:
    """The directory holding ``swagger-ui-bundle.js``, ``swagger-ui.css`` and ReDoc."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "static"
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def router() -> APIRouter:
    """The two documentation pages and their assets (the app is created with
    ``docs_url=None, redoc_url=None``); no routes when the assets are missing."""
    out = APIRouter(include_in_schema=False)
    directory = assets_dir()
    if directory is None:
        logger.warning("API docs pages off: the %s package is not installed", ASSETS_PACKAGE)
        return out
    out.mount(ASSETS_URL, StaticFiles(directory=directory), name="docs-assets")

    @out.get(DOCS_URL)
    async def swagger_ui(request: Request) -> HTMLResponse:
        app = request.app
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @out.get(OAUTH2_REDIRECT_URL)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @out.get(REDOC_URL)
    async def redoc(request: Request) -> HTMLResponse:
        app = request.app
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    return out
