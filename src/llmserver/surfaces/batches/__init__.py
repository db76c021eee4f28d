"""OpenAI's Files and Batches API over the durable jobs layer."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.batches import router


def surface(settings: Settings) -> Surface:
    """``/v1/files`` and ``/v1/batches`` (the jobs run the other surfaces' batch lines)."""
    return Surface("batches", (router.router,))
