"""Anthropic's Messages API: ``/v1/messages`` and ``/v1/messages/count_tokens``."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.anthropic import router
from llmserver.surfaces.anthropic.translate import anthropic_error


def surface(settings: Settings) -> Surface:
    """Anthropic's routes, answering errors in Anthropic's envelope."""
    return Surface("anthropic", (router.router,), error_shapes=((router.PREFIX, anthropic_error),))
