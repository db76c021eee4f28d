"""Ollama's error shape: ``{"error": "text"}`` with the HTTP status."""

from __future__ import annotations

from typing import Any

from llmserver.errors import APIError, ModelNotFoundError


def ollama_error(err: APIError) -> dict[str, Any]:
    """An error as Ollama writes it (its own wording for an unknown model)."""
    if isinstance(err, ModelNotFoundError):
        return {"error": f"model '{err.model}' not found"}
    return {"error": err.message}
