"""Rerank and score translation: wire bodies into the core's :class:`ScoreRequest`, the
core's scores into each API's answer (results sorted by score, highest first; equal scores
keep the documents' order)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from llmserver.core.requests import ScoreRequest
from llmserver.core.rerank import Scores
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.rerank.schemas import (
    RequestBody,
    RerankBody,
    RerankDocument,
    RerankV2Body,
    ScoreBody,
)

logger = logging.getLogger("llmserver.rerank")

#: fields accepted only at their "off" value, with what "off" is
_OFF: dict[str, tuple[Any, ...]] = {
    "max_chunks_per_doc": (None,),
    "return_text": (None, False),
    "max_tokens_per_doc": (None,),
    "relevant_spans": (None,),
    "priority": (None, 0),
    "truncate_prompt_tokens": (None,),
}


def _refuse_unsupported(body: RequestBody) -> None:
    for name, off in _OFF.items():
        if name in type(body).model_fields and getattr(body, name) not in off:
            hint = ' (send "truncate": true to cut documents to the model\'s input)'
            raise InvalidRequestError(
                f"'{name}' is not supported by this server{hint if 'tok' in name else ''}.",
                param=name,
                code="unsupported_parameter",
            )
    if unknown := body.unknown_fields():
        logger.debug("ignoring unknown request fields: %s", ", ".join(unknown))


def _text(index: int, doc: str | RerankDocument, fields: list[str] | None) -> str:
    """The text a document is ranked by: the string, its ``text``, or its ``rank_fields``
    (each as ``name: value`` on a line, in the order given)."""
    if isinstance(doc, str):
        return doc
    if fields is None:
        if doc.text is None:
            raise InvalidRequestError(
                f"document {index} has no 'text'", param=f"documents[{index}].text"
            )
        return doc.text
    values = doc.fields()
    lines = []
    for name in fields:
        value = values.get(name)
        if not isinstance(value, str):
            raise InvalidRequestError(
                f"document {index} has no text field '{name}' (from rank_fields)",
                param=f"documents[{index}].{name}",
            )
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def rerank_request(body: RerankBody) -> ScoreRequest:
    """The core's request for a rerank (either version)."""
    _refuse_unsupported(body)
    texts = [_text(i, doc, body.rank_fields) for i, doc in enumerate(body.documents)]
    pairs = tuple((body.query, text) for text in texts)
    return ScoreRequest(body.model, pairs, truncate=body.truncate)


def score_request(body: ScoreBody) -> ScoreRequest:
    """The core's request for vLLM's score: one ``text_1`` against every ``text_2``, or the
    two lists pairwise."""
    _refuse_unsupported(body)
    first = [body.text_1] if isinstance(body.text_1, str) else body.text_1
    second = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    if not first or not second:
        raise InvalidRequestError("text_1 and text_2 must not be empty", param="text_2")
    if len(first) == 1:
        first = first * len(second)
    if len(first) != len(second):
        raise InvalidRequestError(
            f"text_1 has {len(first)} texts and text_2 {len(second)}: give one text_1, or "
            "lists of one length",
            param="text_2",
        )
    return ScoreRequest(body.model, tuple(zip(first, second, strict=True)), truncate=body.truncate)


def score_param(param: str | None) -> str | None:
    """A rerank field's name as vLLM's score names it: the query is ``text_1``, the documents
    ``text_2``."""
    if param == "query":
        return "text_1"
    if param is not None and param.startswith("documents"):
        return "text_2" + param.removeprefix("documents")
    return param


def _ranked(scores: Scores, top_n: int | None) -> list[int]:
    """Document indices by score, highest first (ties: the earlier document), cut to top_n
    (None or 0: all)."""
    order = sorted(range(len(scores.scores)), key=lambda i: (-scores.scores[i], i))
    return order[:top_n] if top_n else order


def _document(doc: str | RerankDocument) -> dict[str, Any]:
    return {"text": doc} if isinstance(doc, str) else doc.fields()


def _usage(scores: Scores) -> dict[str, int]:
    tokens = scores.usage.prompt_tokens
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def rerank_body(scores: Scores, body: RerankBody, version: int) -> dict[str, Any]:
    """The rerank answer: Jina's fields (``model``, ``usage``, ``results``), Cohere's (``id``,
    ``meta``), and ``scorer``: which kind of model made the scores (a server extra)."""
    results = []
    for index in _ranked(scores, body.top_n):
        item: dict[str, Any] = {"index": index, "relevance_score": scores.scores[index]}
        if body.return_documents:
            item["document"] = _document(body.documents[index])
        results.append(item)
    tokens = scores.usage.prompt_tokens
    return {
        "id": f"rerank-{uuid.uuid4().hex}",
        "object": "list",
        "model": scores.model,
        "results": results,
        "usage": _usage(scores),
        "meta": {
            "api_version": {"version": str(version)},
            "billed_units": {"search_units": 1},
            "tokens": {"input_tokens": tokens, "output_tokens": 0},
        },
        "scorer": scores.scorer,
    }


def rerank_v2_body(scores: Scores, body: RerankV2Body) -> dict[str, Any]:
    """Cohere's v2 answer (the same fields; ``meta.api_version`` 2)."""
    return rerank_body(scores, body, version=2)


def score_body(scores: Scores) -> dict[str, Any]:
    """vLLM's score answer: one ``score`` object per pair, in the pairs' order."""
    data = [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores.scores)]
    return {
        "id": f"score-{uuid.uuid4().hex}",
        "object": "list",
        "created": int(time.time()),
        "model": scores.model,
        "data": data,
        "usage": {**_usage(scores), "completion_tokens": 0},
        "scorer": scores.scorer,
    }
