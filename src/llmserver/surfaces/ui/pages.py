"""``GET /ui``: the web page's files, open without a key (they hold no data), each with a
Content-Security-Policy that allows scripts, styles, images and connections from this server
only, and no inline script or style."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import RedirectResponse, Response

from llmserver.errors import NotFoundError
from llmserver.ui import asset

router = APIRouter(prefix="/ui", include_in_schema=False)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    found = asset(name)
    if found is None:
        raise NotFoundError(f"no page file '{name}'")
    body, media = found
    return Response(body, media_type=media, headers=SECURITY_HEADERS)


@router.get("")
async def ui_root() -> Response:
    """``/ui`` -> ``/ui/`` (relative asset paths then resolve under ``/ui/``)."""
    return RedirectResponse("/ui/", status_code=308, headers=SECURITY_HEADERS)


@router.get("/")
async def index() -> Response:
    """The page."""
    return _file("index.html")


@router.get("/{name}")
async def page_file(name: str) -> Response:
    """One of the page's scripts, styles or images."""
    return _file(name)
