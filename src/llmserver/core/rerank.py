"""Relevance scores of (query, document) pairs, for ``/v1/rerank`` and ``/v1/score``.

A model scores with its own scorer where it has one (a cross-encoder, a GGUF reranker, an
upstream reranker, or an embedding backend that scores as a bi-encoder itself); any other
embedding model scores here as a bi-encoder, from its vectors. Either way the answer says
which kind of scorer made the scores. A bi-encoder gets the model's ``query`` and ``document``
prompts (:mod:`llmserver.core.embed_prompts`); a cross-encoder reads the pair as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from llmserver.backends.abilities import Embedding
from llmserver.backends.scoring import (
    Pair,
    ScoreResult,
    ScorerKind,
    bi_encoder_scores,
    unique_texts,
)
from llmserver.config.settings import Settings
from llmserver.core.embed_prompts import document_prompt, query_prompt
from llmserver.core.manager import ModelHandle
from llmserver.core.usage import Usage
from llmserver.errors import EngineError, InvalidRequestError


@dataclass(slots=True)
class Scores:
    """One score per pair in the request's order, the model, its kind of scorer and usage."""

    model: str
    scores: list[float]
    scorer: ScorerKind
    usage: Usage = field(default_factory=Usage)


def check_limits(pairs: Sequence[Pair], settings: Settings) -> None:
    """400 for no pairs, too many, or a text past ``rerank_max_document_chars``."""
    if not pairs:
        raise InvalidRequestError("documents must not be empty", param="documents")
    if len(pairs) > settings.rerank_max_documents:
        raise InvalidRequestError(
            f"at most {settings.rerank_max_documents} documents per request, got {len(pairs)}",
            param="documents",
            code="too_many_documents",
        )
    limit = settings.rerank_max_document_chars
    for index, (query, document) in enumerate(pairs):
        if len(query) > limit:
            raise InvalidRequestError(
                f"the query is {len(query)} characters long; at most {limit} are allowed",
                param="query",
                code="document_too_long",
            )
        if len(document) > limit:
            raise InvalidRequestError(
                f"document {index} is {len(document)} characters long; at most {limit} are allowed",
                param=f"documents[{index}]",
                code="document_too_long",
            )


def _prompted(handle: ModelHandle, pairs: Sequence[Pair]) -> list[Pair]:
    query, document = query_prompt(handle.config), document_prompt(handle.config)
    return [(query + q, document + d) for q, d in pairs]


async def _from_vectors(
    handle: ModelHandle, model: Embedding, pairs: Sequence[Pair], truncate: bool
) -> ScoreResult:
    """A bi-encoder over any embedding backend: each text embedded once, then cosines."""
    if truncate:
        raise InvalidRequestError(
            f"model '{handle.id}' cannot cut its inputs to fit; send shorter documents",
            param="truncate",
        )
    texts = unique_texts(pairs)
    result = await model.embed(texts)
    return bi_encoder_scores(pairs, texts, result.vectors, result.token_counts)


async def score(handle: ModelHandle, pairs: Sequence[Pair], truncate: bool) -> Scores:
    """Score every pair on ``handle``'s model, in one of its slots."""
    scorer = handle.abilities().scorer()
    spec = scorer.scoring_spec() if scorer is not None else None
    embedder = handle.embedder()
    if scorer is not None and spec is not None:
        kind = spec.kind
        if kind == "bi-encoder":
            pairs = _prompted(handle, pairs)
        async with handle.limiter.slot():
            result = await scorer.score(pairs, truncate)
    elif embedder is not None:
        kind = "bi-encoder"
        async with handle.limiter.slot():
            result = await _from_vectors(handle, embedder, _prompted(handle, pairs), truncate)
    else:
        raise InvalidRequestError(
            f"model '{handle.id}' does not rerank: use an embedding model or a reranker",
            param="model",
            code="model_cannot_rerank",
        )
    if len(result.scores) != len(pairs):
        raise EngineError(f"model '{handle.id}' gave {len(result.scores)} scores for {len(pairs)}")
    return Scores(handle.id, result.scores, kind, Usage(prompt_tokens=result.tokens))
