"""Reranking relayed to an OpenAI-compatible upstream that serves ``/rerank`` (vLLM,
llama-server started with ``--rerank``, another llmserver): the model's pairs go as one Jina
shaped request per query, and each answer is checked before its scores are used (every index
once, in range, with a finite score), so a wrong upstream answer is a 502, never a wrong order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from llmserver.backends.scoring import Pair
from llmserver.backends.usage_check import credible_usage
from llmserver.errors import UpstreamError

RERANK_PATH = "/rerank"


def by_query(pairs: Sequence[Pair]) -> list[tuple[str, list[int]]]:
    """The pairs grouped by query, in first-seen order: (query, the pairs' positions)."""
    groups: dict[str, list[int]] = {}
    for position, (query, _) in enumerate(pairs):
        groups.setdefault(query, []).append(position)
    return list(groups.items())


def rerank_body(model: str, query: str, documents: list[str], truncate: bool) -> bytes:
    """One upstream rerank request for every document, none sent back; ``truncate`` asks in
    llmserver's and vLLM's words (llama-server has no such field)."""
    body: dict[str, Any] = {
        "model": model,
        "query": query,
        "documents": documents,
        "top_n": len(documents),
        "return_documents": False,
    }
    if truncate:
        body["truncate"] = True
        body["truncate_prompt_tokens"] = -1
    return orjson.dumps(body)


def read_scores(raw: bytes, count: int, request_bytes: int) -> tuple[list[float], int]:
    """The scores by document index from an upstream's rerank answer, and its token count
    (checked; estimated where not credible)."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError("upstream sent a rerank answer that is not JSON") from None
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != count:
        raise UpstreamError(f"upstream sent a rerank answer without {count} results")
    scores: list[float | None] = [None] * count
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score") if isinstance(item, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            raise UpstreamError("upstream sent a rerank result with an index out of range")
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise UpstreamError("upstream sent a rerank result without a relevance_score")
        if not math.isfinite(score) or scores[index] is not None:
            raise UpstreamError("upstream sent a rerank result twice or not finite")
        scores[index] = float(score)
    usage = answer.get("usage")
    reported = usage if isinstance(usage, dict) else {}
    tokens = reported.get("prompt_tokens", reported.get("total_tokens"))
    prompt, _ = credible_usage(
        {"prompt_tokens": tokens, "completion_tokens": 0}, 0, 0, request_bytes
    )
    return [s for s in scores if s is not None], prompt
