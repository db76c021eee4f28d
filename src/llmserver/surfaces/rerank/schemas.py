"""Rerank and score wire schemas: Jina's and Cohere's v1 ``/v1/rerank`` (also vLLM's and
llama-server's), Cohere's ``/v2/rerank`` and vLLM's pairwise ``/v1/score``.

Requests accept unknown fields (clients send them; :mod:`.translate` logs them). Fields these
APIs have and this server does not honour are declared so that they are refused by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class RequestBody(BaseModel):
    """A request body: fields this server does not know are kept, to be refused by name."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    def unknown_fields(self) -> list[str]:
        """Names of fields this server does not know."""
        return sorted(self.model_extra or {})


class RerankDocument(BaseModel):
    """A document given as an object: ``text`` (or the ``rank_fields``) is read; every field
    is sent back as it came (Cohere v1 keeps them)."""

    model_config = ConfigDict(extra="allow")

    text: str | None = None

    def fields(self) -> dict[str, Any]:
        """Every field as the client sent it."""
        return self.model_dump(exclude_none=True)


class RerankBody(RequestBody):
    """``POST /v1/rerank`` and ``/rerank`` (Jina, Cohere v1, vLLM, llama-server)."""

    model: str | None = None
    query: str
    documents: list[str | RerankDocument]
    top_n: StrictInt | None = Field(None, ge=0)
    return_documents: StrictBool = True
    rank_fields: list[str] | None = Field(None, min_length=1)
    truncate: StrictBool = False
    # Cohere v1 and llama-server fields this server does not honour
    max_chunks_per_doc: StrictInt | None = None
    return_text: StrictBool | None = None


class RerankV2Body(RerankBody):
    """``POST /v2/rerank`` (Cohere v2): no documents in the answer unless asked."""

    return_documents: StrictBool = False
    # Cohere v2 fields this server does not honour
    max_tokens_per_doc: StrictInt | None = None
    relevant_spans: Any = None
    priority: StrictInt | None = None


class ScoreBody(RequestBody):
    """``POST /v1/score`` (vLLM): ``text_1`` against each ``text_2`` (one to many), or pairwise
    (two lists of one length)."""

    model: str | None = None
    text_1: str | list[str]
    text_2: str | list[str]
    truncate: StrictBool = False
    # vLLM fields this server does not honour
    truncate_prompt_tokens: StrictInt | None = None
