"""OpenAI's Responses API: ``/v1/responses`` (created, streamed, stored, in the background)."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.responses import router
from llmserver.surfaces.responses.batch_lines import ResponseLines


def surface(settings: Settings) -> Surface:
    """The Responses routes, answering errors in OpenAI's shape (the default); batch lines
    of ``/v1/responses``."""
    return Surface("responses", (router.router,), batch_lines={"/v1/responses": ResponseLines()})
