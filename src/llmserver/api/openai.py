"""The OpenAI surface: chat completions, completions, models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmserver.api.deps import (
    CLIENT_CLOSED,
    ClientDisconnected,
    access,
    json_response,
    manager,
    service,
    until_disconnect,
)
from llmserver.models import ModelHandle
from llmserver.protocol import ChatCompletionRequest, CompletionRequest
from llmserver.service import (
    chat_chunks,
    chat_response,
    completion_chunks,
    completion_response,
)
from llmserver.streaming import EventStream

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


@router.post("/chat/completions")
async def chat_completions(request: Request, req: ChatCompletionRequest) -> Response:
    """``POST /v1/chat/completions``."""
    gen = service(request).chat(req)
    record = access(request)
    record.model, record.usage, record.streamed = gen.handle.id, gen.usage, req.stream
    if req.stream:
        return await _respond(request, None, chat_chunks(gen, req.include_usage()))
    return await _respond(request, chat_response(gen, req.n), None)


@router.post("/completions")
async def completions(request: Request, req: CompletionRequest) -> Response:
    """``POST /v1/completions``."""
    gen = service(request).completion(req)
    record = access(request)
    record.model, record.usage, record.streamed = gen.handle.id, gen.usage, req.stream
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
        "error": handle.error,
    }


@router.get("/models")
async def list_models(request: Request) -> Response:
    """``GET /v1/models``."""
    cards = [model_card(h) for h in manager(request).handles()]
    return json_response({"object": "list", "data": cards})


@router.get("/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    """``GET /v1/models/{id}`` (an alias works too)."""
    return json_response(model_card(manager(request).lookup(model_id)))
