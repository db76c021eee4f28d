"""The OpenAI surface: chat completions, completions, models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from llmserver.http.respond import (
    CLIENT_CLOSED,
    ClientDisconnected,
    json_response,
    manager,
    require_admin,
    service,
    track,
    until_disconnect,
)
from llmserver.errors import ModelNotFoundError
from llmserver.core.manager import ModelHandle
from llmserver.surfaces.openai.schemas import ChatCompletionRequest, CompletionRequest
from llmserver.security import pii
from llmserver.security.access import caller, check_model, may_use
from llmserver.core.service import (
    chat_chunks,
    chat_response,
    completion_chunks,
    completion_response,
)
from llmserver.http.streaming import EventStream

router = APIRouter(prefix="/v1")


async def _respond(request: Request, body: Any, stream: Any) -> Response:
    """Stream when asked, else wait for the whole body. A client that leaves while its request
    waits for a slot, for its first token or for the whole answer cancels the generation."""
    try:
        if stream is not None:
            events = EventStream(stream, request.app.state.settings.keepalive_s)
            await until_disconnect(request, events.start())
            return events.response()
        return json_response(await until_disconnect(request, body))
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)


def _masks(request: Request, model: str | None) -> bool:
    """403 unless the caller may use the model; whether its prompts are to be masked."""
    handle = check_model(request, manager(request).lookup(model))
    return pii.wanted(handle, caller(request))


@router.post("/chat/completions")
async def chat_completions(request: Request, req: ChatCompletionRequest) -> Response:
    """``POST /v1/chat/completions``."""
    if _masks(request, req.model):
        req = pii.mask_chat(request.app.state.pii, req)
    gen = service(request).chat(req)
    track(request, gen, req.stream)
    if req.stream:
        return await _respond(request, None, chat_chunks(gen, req.include_usage()))
    return await _respond(request, chat_response(gen, req.n), None)


@router.post("/completions")
async def completions(request: Request, req: CompletionRequest) -> Response:
    """``POST /v1/completions``."""
    if _masks(request, req.model):
        req = pii.mask_completion(request.app.state.pii, req)
    gen = service(request).completion(req)
    track(request, gen, req.stream)
    n_choices = len(req.prompts()) * req.n
    if req.stream:
        return await _respond(request, None, completion_chunks(gen, req.include_usage(), req.echo))
    return await _respond(request, completion_response(gen, n_choices, req.echo), None)


def model_card(handle: ModelHandle) -> dict[str, Any]:
    """A model object: OpenAI's fields, then server extras."""
    return {
        "id": handle.id,
        "object": "model",
        "created": int(handle.loaded_at),
        "owned_by": "llmserver",
        "backend": handle.config.backend,
        "state": handle.state,
        "aliases": handle.config.aliases,
        "roles": handle.roles,
        "error": handle.error,
    }


@router.get("/models")
async def list_models(request: Request) -> Response:
    """``GET /v1/models``."""
    cards = [model_card(h) for h in manager(request).handles() if may_use(request, h)]
    return json_response({"object": "list", "data": cards})


@router.post("/models/{model_id:path}/load", dependencies=[Depends(require_admin)])
async def load_model(request: Request, model_id: str) -> Response:
    """``POST /v1/models/{id}/load`` (admin): load now, evicting an idle model if the cap is
    reached; 503 with the reason if it fails."""
    return json_response(model_card(await manager(request).load(model_id)))


@router.post("/models/{model_id:path}/unload", dependencies=[Depends(require_admin)])
async def unload_model(request: Request, model_id: str) -> Response:
    """``POST /v1/models/{id}/unload`` (admin): free the model once its running requests end."""
    return json_response(model_card(await manager(request).unload(model_id)))


@router.get("/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    """``GET /v1/models/{id}`` (an alias works too); a model hidden from the key is a 404."""
    handle = manager(request).lookup(model_id)
    if not may_use(request, handle):
        raise ModelNotFoundError(model_id)
    return json_response(model_card(handle))
