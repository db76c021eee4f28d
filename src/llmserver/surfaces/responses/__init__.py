"""OpenAI's Responses API: ``/v1/responses`` (created, streamed, stored, in the background)."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.responses import router


def surface(settings: Settings) -> Surface:
    """The Responses routes, answering errors in OpenAI's shape (the default)."""
    return Surface("responses", (router.router,))
