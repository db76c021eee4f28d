"""``GET /`` from a browser goes to the web page (pure ASGI).

Content negotiation, for browsers only: a request for ``/`` whose ``Accept`` header names
``text/html`` (every browser's navigation does; API clients, curl and Ollama's clients do not) is
redirected to ``/ui/``; everything else reaches the ``/`` route unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

PAGE = "/ui/"


def wants_html(accept: str) -> bool:
    """Whether an ``Accept`` header asks for HTML (``text/html`` listed with a non-zero q)."""
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() != "text/html":
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


class BrowserRedirectMiddleware:
    """303 to the page for a browser's ``GET /``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            headers = dict(scope.get("headers", []))
            if wants_html(headers.get(b"accept", b"").decode("latin-1")):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 303,
                        "headers": [
                            (b"location", PAGE.encode()),
                            (b"vary", b"Accept"),
                            (b"content-length", b"0"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
