"""OpenAI's API: chat completions, completions, embeddings and models."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.errors import openai_error
from llmserver.http.surface import Surface
from llmserver.surfaces.openai import batch_lines, router, tokens


def surface(settings: Settings) -> Surface:
    """OpenAI's routes, vLLM's token tools (``/tokenize``, ``/detokenize``), then seed 001's
    aliases of them; OpenAI's error shape (the default, and
    named for the aliases under ``/api/v1``, which would otherwise be Ollama's ``/api``); the
    batch lines of its three generation endpoints."""
    return Surface(
        "openai",
        (router.router, tokens.router, router.aliases()),
        error_shapes=(("/api/v1", openai_error),),
        batch_lines=batch_lines.handlers(),
    )
