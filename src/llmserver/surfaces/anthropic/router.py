"""The Anthropic surface's routes: messages (streamed or not) and token counts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmserver.errors import InvalidRequestError
from llmserver.http.context import request_context
from llmserver.http.respond import (
    caller,
    respond_json,
    respond_stream,
    routed,
    service,
    track,
)
from llmserver.surfaces.anthropic import tools, translate
from llmserver.surfaces.anthropic.schemas import CountTokensRequest, MessagesRequest

#: where this surface's errors are rendered in Anthropic's envelope (see the descriptor)
PREFIX = "/v1/messages"

router = APIRouter(prefix=PREFIX)


def _headers(request: Request) -> dict[str, str]:
    """Anthropic's ``request-id`` header (the SDKs show it as ``_request_id``)."""
    request_id = request_context(request.scope).request_id
    return {"request-id": request_id} if request_id else {}


@router.post("")
async def create_message(request: Request, req: MessagesRequest) -> Response:
    """``POST /v1/messages``; ``anthropic-version`` and ``anthropic-beta`` are not checked."""
    try:
        core, route = await routed(request, translate.chat_request(req), "anthropic")
        gen = service(request).chat(caller(request), core)
    except InvalidRequestError as exc:
        raise tools.in_anthropic_terms(exc) from None
    track(request, gen, req.stream)
    headers = _headers(request) | route
    if req.stream:
        events = translate.message_events(gen)
        return await respond_stream(request, events, translate.ANTHROPIC_SSE, headers)
    return await respond_json(request, translate.message_response(gen), headers)


@router.post("/count_tokens")
async def count_tokens(request: Request, req: CountTokensRequest) -> Response:
    """``POST /v1/messages/count_tokens``: the prompt's length in the model's own tokens."""

    async def body() -> dict[str, int]:
        core = translate.count_request(req)
        try:
            tokens = await service(request).count_tokens(caller(request), core)
        except InvalidRequestError as exc:
            raise tools.in_anthropic_terms(exc) from None
        return {"input_tokens": tokens}

    return await respond_json(request, body(), _headers(request))
