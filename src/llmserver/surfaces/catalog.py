"""Every surface the app serves, in the order their routes are matched."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces import (
    admin,
    anthropic,
    batches,
    llamaserver,
    ollama,
    openai,
    rerank,
    responses,
    simple,
    ui,
)


def surfaces(settings: Settings) -> list[Surface]:
    """Each surface's descriptor. Routes are matched in order: the probes (``/health``) and the
    hot generation routes (OpenAI's, Ollama's) come first; no two surfaces share a path."""
    return [
        make(settings)
        for make in (
            admin.surface,
            openai.surface,
            responses.surface,
            ollama.surface,
            llamaserver.surface,
            rerank.surface,
            simple.surface,
            anthropic.surface,
            ui.surface,
            batches.surface,
        )
    ]
