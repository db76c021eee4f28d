"""Logging set-up and the per-request access record."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from llmserver.service import Usage

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(slots=True)
class AccessRecord:
    """What one request did, filled in by the handler and logged by the access middleware."""

    request_id: str | None = None
    key_name: str | None = None  # filled in by authentication; never the key itself
    model: str | None = None
    backend: str | None = None
    usage: Usage = field(default_factory=Usage)
    streamed: bool = False
    ttft_s: float | None = None


def configure_logging(level: str) -> None:
    """Console logging for the server and its libraries, at ``level``."""
    root = logging.getLogger()
    if not any(getattr(h, "_llmserver", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._llmserver = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own access log would duplicate ours
    logging.getLogger("uvicorn.access").disabled = True
