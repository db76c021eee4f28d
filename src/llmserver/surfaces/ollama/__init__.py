"""Ollama's native API (``/api/...``), as its ``docs/api.md`` and ``api/types.go`` define it."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.ollama import router
from llmserver.surfaces.ollama.errors import ollama_error


def surface(settings: Settings) -> Surface:
    """Ollama's routes under ``/api``, answering errors in Ollama's ``{"error": "..."}``."""
    return Surface("ollama", (router.router,), error_shapes=((router.router.prefix, ollama_error),))
