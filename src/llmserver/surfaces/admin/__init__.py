"""Status, health, metrics, usage, log level, who-am-i and the API's documentation pages."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.admin import docs, status, telemetry, whoami


def surface(settings: Settings) -> Surface:
    """The admin surface: OpenAI's error shape (the default), no batch endpoints."""
    return Surface("admin", (docs.router(), status.router, telemetry.router, whoami.router))
