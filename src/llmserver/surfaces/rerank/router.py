"""The rerank and score routes: ``/v1/rerank`` and ``/rerank``, ``/v2/rerank``, ``/v1/score``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmserver.core.requests import ScoreRequest
from llmserver.core.rerank import Scores
from llmserver.core.usage import Usage
from llmserver.errors import APIError
from llmserver.http.respond import caller, respond_json, service, track_usage
from llmserver.surfaces.rerank import translate
from llmserver.surfaces.rerank.schemas import RerankBody, RerankV2Body, ScoreBody

router = APIRouter(tags=["rerank"])


async def _answer(
    request: Request,
    core: ScoreRequest,
    shape: Callable[[Scores], dict[str, Any]],
    pairwise: bool = False,
) -> Response:
    """Score on the core's one path, account the tokens, answer in ``shape``; ``pairwise``:
    errors name vLLM's fields (``text_1`` for the query, ``text_2[i]`` for a document)."""
    track_usage(request, core.model, Usage())

    async def body() -> dict[str, Any]:
        try:
            scores = await service(request).score(caller(request), core)
        except APIError as err:
            if pairwise:
                err.param = translate.score_param(err.param)
            raise
        track_usage(request, scores.model, scores.usage)
        return shape(scores)

    return await respond_json(request, body())


@router.post("/v1/rerank")
async def rerank(request: Request, body: RerankBody) -> Response:
    """``POST /v1/rerank``: the documents ordered by relevance to the query (Jina, Cohere v1,
    vLLM and llama-server clients)."""
    core = translate.rerank_request(body)
    return await _answer(request, core, lambda s: translate.rerank_body(s, body, version=1))


@router.post("/rerank")
async def rerank_root(request: Request, body: RerankBody) -> Response:
    """``POST /rerank``: the same as ``/v1/rerank`` (vLLM's and llama-server's other path)."""
    return await rerank(request, body)


@router.post("/v2/rerank")
async def rerank_v2(request: Request, body: RerankV2Body) -> Response:
    """``POST /v2/rerank`` (Cohere v2)."""
    core = translate.rerank_request(body)
    return await _answer(request, core, lambda s: translate.rerank_v2_body(s, body))


@router.post("/v1/score")
async def score(request: Request, body: ScoreBody) -> Response:
    """``POST /v1/score`` (vLLM): a score per (text_1, text_2) pair, in the pairs' order."""
    core = translate.score_request(body)
    return await _answer(request, core, translate.score_body, pairwise=True)
