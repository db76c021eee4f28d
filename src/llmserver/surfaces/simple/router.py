"""The simple endpoints: ``/infer``, ``/infer/stream``, ``/generate`` and ``/chat``.

Each translates its small request into the core's chat or text request, so validation, limits,
slots, policy and token counting are the same as on every other surface. With
``fallback_response`` set, an inference failure (a 5xx) is answered 200 with that text and
``x-llmserver-fallback: true``, streams included, and logged as the failure it is.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmserver.config.settings import Settings
from llmserver.core.generation import Generation
from llmserver.core.usage import Usage
from llmserver.errors import APIError, InternalError
from llmserver.http.context import app_context
from llmserver.http.respond import (
    access,
    caller,
    json_response,
    respond_json,
    respond_stream,
    service,
    track,
)
from llmserver.http.streaming import OPENAI_SSE, Framing
from llmserver.surfaces.simple import errors, translate
from llmserver.surfaces.simple.schemas import GenerateRequest, InferRequest

logger = logging.getLogger("llmserver.simple")
router = APIRouter(tags=["simple"])

FALLBACK_HEADER = "x-llmserver-fallback"
#: the paths of this surface, each answering errors in its shape (``detail`` beside ``error``)
PATHS = ("/infer", "/infer/stream", "/generate", "/chat")


def _settings(request: Request) -> Settings:
    return app_context(request.app).settings


def _fallback(request: Request, exc: Exception, endpoint: str) -> str | None:
    """The fallback text when it may stand in for ``exc`` (a failure of the server, not a
    refusal of the request), after logging the failure it hides; None: let ``exc`` through."""
    text = _settings(request).fallback_response
    if text is None or (isinstance(exc, APIError) and exc.status < 500):
        return None
    if isinstance(exc, APIError):
        reason = f"{exc.message} ({exc.code})"
        logger.error("%s failed, answering with the fallback response: %s", endpoint, reason)
        access(request).error_code = exc.code
    else:
        logger.error(
            "%s failed, answering with the fallback response: %s",
            endpoint,
            type(exc).__name__,
            exc_info=exc,
        )
        access(request).error_code = InternalError.default_code
    return text


def _framing(request: Request) -> Framing:
    """Server-sent events whose errors after the first byte are in this surface's shape."""
    shape = errors.error_shape(_settings(request).error_language)
    return dataclasses.replace(OPENAI_SSE, error_shape=shape)


async def _json_or_fallback(
    request: Request,
    endpoint: str,
    work: Callable[[], Awaitable[object]],
    fallback: Callable[[str], object],
) -> Response:
    """``work``'s body as JSON; when it fails and a fallback text is set, the body
    ``fallback`` builds around that text."""
    try:
        return await respond_json(request, work())
    except Exception as exc:
        text = _fallback(request, exc, endpoint)
        if text is None:
            raise
        return json_response(fallback(text), headers={FALLBACK_HEADER: "true"})


# -- /infer ------------------------------------------------------------------------------------


def _infer_query(request: Request, req: InferRequest) -> str:
    """Whitespace runs collapsed, personal data masked, then cut to ``input_max_length`` (masked
    before the cut, so no value is cut in half and missed)."""
    settings = _settings(request)
    text = translate.clean_query(req.query)
    if settings.infer_mask_pii:
        text = service(request).mask(text)
    return text[: settings.input_max_length]


def _infer_generation(request: Request, req: InferRequest, query: str) -> Generation:
    chat = translate.infer_request(_settings(request), req, query)
    return service(request).chat(caller(request), chat)


def _log_infer(request: Request, query: str, usage: Usage | None, texts: list[str]) -> None:
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
    usage: Usage | None = None
    texts: list[str] = []

    async def work() -> dict[str, object]:
        nonlocal usage
        gen = _infer_generation(request, req, query)
        usage = gen.usage
        track(request, gen, False)
        texts.extend((await gen.collect()).texts)
        return translate.infer_body(texts)

    def fallback(text: str) -> dict[str, object]:
        texts[:] = [text]
        return translate.infer_body(texts)

    try:
        return await _json_or_fallback(request, "infer", work, fallback)
    finally:
        _log_infer(request, query, usage, texts)


@router.post("/infer/stream")
async def infer_stream(request: Request, req: InferRequest) -> Response:
    """``/infer`` as server-sent events: ``{"index", "text"}`` pieces, ``{"index",
    "finish_reason"}`` per choice, then the whole result with usage, then ``[DONE]``."""
    query = _infer_query(request, req)
    texts: list[str] = []
    usage = Usage()
    sent = False

    async def logged(gen: Generation) -> AsyncIterator[dict[str, Any]]:
        nonlocal sent
        try:
            async for chunk in translate.infer_chunks(gen, texts):
                sent = True
                yield chunk
        finally:
            if sent:  # a failure before the first chunk is logged below
                _log_infer(request, query, usage, texts)

    try:
        gen = _infer_generation(request, req, query)
        usage = gen.usage
        track(request, gen, True)
        return await respond_stream(request, logged(gen), _framing(request))
    except Exception as exc:
        text = _fallback(request, exc, "infer")
        _log_infer(request, query, usage, [] if text is None else [text])
        if text is None:
            raise
        fallback = translate.fallback_chunks(text, usage)
        headers = {FALLBACK_HEADER: "true"}
        return await respond_stream(request, fallback, _framing(request), headers)


# -- /generate and /chat -------------------------------------------------------------------------


def _prompt_fallback(prompt: str) -> Callable[[str], dict[str, str]]:
    return lambda text: translate.generate_body(prompt, prompt, text)


@router.post("/generate")
async def generate(request: Request, req: GenerateRequest) -> Response:
    """Continue ``prompt`` as plain text (no chat template)."""

    async def work() -> dict[str, str]:
        text = translate.generate_request(_settings(request), req)
        gen = service(request).text(caller(request), text)
        track(request, gen, False)
        return await translate.generate_response(gen)

    return await _json_or_fallback(request, "generate", work, _prompt_fallback(req.prompt))


@router.post("/chat")
async def chat(request: Request, req: GenerateRequest) -> Response:
    """Reply to ``prompt``: a user turn in the model's chat template, or the configured
    ``chat_prompt_format``; ``full_text`` is the rendered prompt and the reply."""

    async def work() -> dict[str, str]:
        message = translate.chat_request(_settings(request), req)
        gen = service(request).chat(caller(request), message)
        track(request, gen, False)
        return await translate.generate_response(gen)

    return await _json_or_fallback(request, "chat", work, _prompt_fallback(req.prompt))
