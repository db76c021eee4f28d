"""Reranking and pair scoring: Jina's and Cohere's rerank APIs (v1 and v2) and vLLM's score."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.rerank import router


def surface(settings: Settings) -> Surface:
    """``/v1/rerank``, ``/rerank``, ``/v2/rerank`` and ``/v1/score``, answering errors in
    OpenAI's shape (as vLLM and llama-server do)."""
    return Surface("rerank", (router.router,))
