"""The simple endpoints: ``/infer``, ``/infer/stream``, ``/generate`` and ``/chat``.

Each translates its small request into the core's chat or text request, so validation, limits,
slots, policy and token counting are the same as on every other surface.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from llmserver.config.settings import Settings
from llmserver.core.generation import Generation
from llmserver.core.requests import ChatRequest, Message, Sampling, TextRequest
from llmserver.errors import APIError, InvalidRequestError
from llmserver.http.respond import (
    CLIENT_CLOSED,
    ClientDisconnected,
    caller,
    json_response,
    respond_json,
    respond_stream,
    service,
    track,
    until_disconnect,
)

logger = logging.getLogger("llmserver.simple")
router = APIRouter()

MAX_QUERY = 4096
#: completion length when a simple request gives none: bounded, unlike "the rest of the context"
DEFAULT_TOKENS = 128
FALLBACK_HEADER = "x-llmserver-fallback"


class InferRequest(BaseModel):
    """``POST /infer`` and ``/infer/stream``."""

    model_config = ConfigDict(extra="allow")

    query: str = Field(min_length=1, max_length=MAX_QUERY)
    max_length: int = Field(DEFAULT_TOKENS, ge=1, description="Tokens to generate at most.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    num_return_sequences: int = Field(1, ge=1)


class GenerateRequest(BaseModel):
    """``POST /generate`` and ``/chat``."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    prompt: str = Field(min_length=1)
    max_tokens: int = Field(DEFAULT_TOKENS, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_k: int | None = Field(None, ge=0)
    model: str | None = None


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# -- /infer ------------------------------------------------------------------------------------


def _infer_query(request: Request, req: InferRequest) -> str:
    """Whitespace runs collapsed, personal data masked, then cut to ``input_max_length`` (masked
    before the cut, so no value is cut in half and missed)."""
    settings = _settings(request)
    text = " ".join(req.query.split())
    if not text:
        raise InvalidRequestError("query must not be blank", param="query", code="invalid_value")
    if settings.infer_mask_pii:
        text = service(request).mask(text)
    return text[: settings.input_max_length]


def _infer_generation(request: Request, req: InferRequest, query: str) -> Generation:
    settings = _settings(request)
    if req.num_return_sequences > settings.max_n:
        raise InvalidRequestError(
            f"num_return_sequences must be at most {settings.max_n}",
            param="num_return_sequences",
            code="invalid_value",
        )
    chat = ChatRequest(
        None,
        (Message("user", query),),
        Sampling(max_tokens=req.max_length, temperature=req.temperature, top_p=req.top_p),
        n=req.num_return_sequences,
    )
    return service(request).chat(caller(request), chat)


def _infer_body(texts: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"generated_text": texts[0]}
    if len(texts) > 1:
        body["generated_texts"] = texts
    return body


def _log_infer(request: Request, query: str, gen: Generation | None, texts: list[str]) -> None:
    usage = gen.usage if gen is not None else None
    logger.info(
        'infer query="%s" generated_chars=%d prompt_tokens=%d completion_tokens=%d',
        service(request).excerpt(query),
        sum(len(t) for t in texts),
        usage.prompt_tokens if usage else 0,
        usage.completion_tokens if usage else 0,
    )


@router.post("/infer")
async def infer(request: Request, req: InferRequest) -> Response:
    """Generate a reply to ``query`` (as a user turn in the model's chat template)."""
    query = _infer_query(request, req)
    gen: Generation | None = None
    try:
        gen = _infer_generation(request, req, query)
        track(request, gen, False)
        result = await until_disconnect(request, gen.collect())
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    except Exception as exc:
        fallback = _settings(request).fallback_response
        if fallback is None or (isinstance(exc, APIError) and exc.status < 500):
            raise
        logger.error("infer failed, answering with the fallback response: %s", _reason(exc))
        _log_infer(request, query, gen, [fallback])
        return json_response(_infer_body([fallback]), headers={FALLBACK_HEADER: "true"})
    _log_infer(request, query, gen, result.texts)
    return json_response(_infer_body(result.texts))


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, APIError) else type(exc).__name__


@router.post("/infer/stream")
async def infer_stream(request: Request, req: InferRequest) -> Response:
    """``/infer`` as server-sent events: ``{"index", "text"}`` pieces, ``{"index",
    "finish_reason"}`` per choice, then the whole result with usage, then ``[DONE]``."""
    query = _infer_query(request, req)
    gen = _infer_generation(request, req, query)
    track(request, gen, True)

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        texts = [""] * gen.n_choices
        try:
            async for index, delta in gen.events():
                if delta.text:
                    texts[index] += delta.text
                    yield {"index": index, "text": delta.text}
                if delta.finish_reason is not None:
                    yield {"index": index, "finish_reason": delta.finish_reason}
            usage = gen.usage
            yield {
                **_infer_body(texts),
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                },
            }
        finally:
            _log_infer(request, query, gen, texts)

    return await respond_stream(request, chunks())


# -- /generate and /chat -------------------------------------------------------------------------


def _sampling(req: GenerateRequest) -> Sampling:
    return Sampling(max_tokens=req.max_tokens, temperature=req.temperature, top_k=req.top_k)


@router.post("/generate")
async def generate(request: Request, req: GenerateRequest) -> Response:
    """Continue ``prompt`` as plain text (no chat template)."""
    text = TextRequest(req.model, (req.prompt,), _sampling(req))
    gen = service(request).text(caller(request), text)
    track(request, gen, False)

    async def body() -> dict[str, str]:
        generated = (await gen.collect()).texts[0]
        prompt = gen.inputs[0]
        return {"prompt": prompt, "generated": generated, "full_text": prompt + generated}

    return await respond_json(request, body())


@router.post("/chat")
async def chat(request: Request, req: GenerateRequest) -> Response:
    """Reply to ``prompt`` as a user turn; ``full_text`` is the rendered conversation."""
    message = ChatRequest(req.model, (Message("user", req.prompt),), _sampling(req))
    gen = service(request).chat(caller(request), message)
    track(request, gen, False)

    async def body() -> dict[str, str]:
        generated = (await gen.collect()).texts[0]
        prompt = gen.inputs[0]
        rendered = gen.prompts[0] if gen.prompts else prompt
        return {"prompt": prompt, "generated": generated, "full_text": rendered + generated}

    return await respond_json(request, body())
