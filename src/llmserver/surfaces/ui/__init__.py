"""The web page's surface: the page at ``/ui`` and its data endpoints under ``/dashboard``."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.ui import pages, router


def surface(settings: Settings) -> Surface:
    """The page's files, then its data endpoints."""
    return Surface("ui", (pages.router, router.router))
