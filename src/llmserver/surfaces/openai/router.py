"""The OpenAI surface's routes: chat completions, completions, embeddings and models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from llmserver.core.usage import Usage
from llmserver.http.respond import (
    caller,
    json_response,
    require_admin,
    respond_json,
    respond_stream,
    routed,
    service,
    track,
    track_usage,
)
from llmserver.surfaces.openai import translate
from llmserver.surfaces.openai.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)

router = APIRouter(prefix="/v1")


@router.post("/chat/completions")
async def chat_completions(request: Request, req: ChatCompletionRequest) -> Response:
    """``POST /v1/chat/completions``."""
    core, headers = await routed(request, translate.chat_request(req), "openai")
    gen = service(request).chat(caller(request), core)
    track(request, gen, bool(req.stream))
    logprobs = bool(req.logprobs)
    if req.stream:
        chunks = translate.chat_chunks(gen, req.include_usage(), logprobs)
        return await respond_stream(request, chunks, headers=headers)
    return await respond_json(request, translate.chat_response(gen, logprobs), headers)


@router.post("/completions")
async def completions(request: Request, req: CompletionRequest) -> Response:
    """``POST /v1/completions``; with ``suffix``, the code for the hole between the prompt
    and the suffix (fill-in-the-middle; ``echo`` gives back the prompt)."""
    if (infill := translate.infill_request(req)) is not None:
        infill, headers = await routed(request, infill, "openai")
        gen = service(request).infill(caller(request), infill)
        echoed: list[str] | None = [infill.prefix] * gen.n_choices
    else:
        text, headers = await routed(request, translate.text_request(req), "openai")
        gen = service(request).text(caller(request), text)
        echoed = None
    track(request, gen, bool(req.stream))
    logprobs = req.logprobs is not None
    if req.stream:
        chunks = translate.completion_chunks(gen, req.include_usage(), req.echo, logprobs, echoed)
        return await respond_stream(request, chunks, headers=headers)
    body = translate.completion_response(gen, req.echo, logprobs, echoed)
    return await respond_json(request, body, headers)


@router.post("/embeddings")
async def embeddings(request: Request, req: EmbeddingRequest) -> Response:
    """``POST /v1/embeddings``."""
    usage = Usage()
    track_usage(request, req.model, usage)

    async def body() -> dict[str, object]:
        result = await service(request).embed(caller(request), translate.embed_request(req))
        track_usage(request, result.model, result.usage)
        return translate.embedding_body(result, req.encoding_format)

    return await respond_json(request, body())


@router.get("/models")
async def list_models(request: Request) -> Response:
    """``GET /v1/models``: the models the caller may use."""
    admin = service(request).admin
    cards = [translate.model_card(v) for v in admin.models(caller(request))]
    return json_response(
        {"object": "list", "data": cards, "memory": translate.memory_use(admin.memory().devices)}
    )


@router.post("/models/{model_id:path}/load", dependencies=[Depends(require_admin)])
async def load_model(request: Request, model_id: str) -> Response:
    """``POST /v1/models/{id}/load`` (admin): load now, evicting an idle model if the cap is
    reached; 503 with the reason if it fails."""
    view = await service(request).admin.load(caller(request), model_id)
    return json_response(translate.model_card(view))


@router.post("/models/{model_id:path}/unload", dependencies=[Depends(require_admin)])
async def unload_model(request: Request, model_id: str) -> Response:
    """``POST /v1/models/{id}/unload`` (admin): free the model once its running requests end."""
    view = await service(request).admin.unload(caller(request), model_id)
    return json_response(translate.model_card(view))


@router.get("/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    """``GET /v1/models/{id}`` (an alias works too); a model hidden from the key is a 404."""
    return json_response(
        translate.model_card(service(request).admin.model(caller(request), model_id))
    )


# -- the architecture document's (seed 001) paths --------------------------------------------------

#: (alias path, method, target path, endpoint, admin only)
_ALIASES: tuple[tuple[str, str, str, Callable[..., Any], bool], ...] = (
    ("/api/v1/chat/completions", "POST", "/v1/chat/completions", chat_completions, False),
    ("/api/v1/completions", "POST", "/v1/completions", completions, False),
    ("/api/v1/embeddings", "POST", "/v1/embeddings", embeddings, False),
    ("/models", "GET", "/v1/models", list_models, False),
    ("/models/{model_id:path}/load", "POST", "/v1/models/{model_id}/load", load_model, True),
    ("/models/{model_id:path}/unload", "POST", "/v1/models/{model_id}/unload", unload_model, True),
)


def aliases() -> APIRouter:
    """Seed 001's paths as aliases of ours: the same route functions (so the same validation,
    policy and answers), marked in the OpenAPI document with the ``aliases`` tag and
    ``x-alias-of``."""
    out = APIRouter(tags=["aliases"])
    for path, method, target, endpoint, admin in _ALIASES:
        out.add_api_route(
            path,
            endpoint,
            methods=[method],
            summary=f"Alias of {method} {target}",
            description=f"The same route as `{method} {target}`, at the path of the "
            "architecture document.",
            dependencies=[Depends(require_admin)] if admin else None,
            openapi_extra={"x-alias-of": target},
        )
    return out
