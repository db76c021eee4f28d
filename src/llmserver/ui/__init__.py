"""The web page's static assets (plain HTML, CSS and JavaScript, no build step), shipped as
package data; :func:`asset` reads one by name."""

from __future__ import annotations

from importlib import resources

#: the files the page consists of, with their media types; nothing else is served
MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def asset(name: str) -> tuple[bytes, str] | None:
    """The bytes and media type of the asset called ``name``, or None if there is none."""
    media = MEDIA_TYPES.get(name)
    if media is None:
        return None
    return (resources.files(__package__) / "static" / name).read_bytes(), media
