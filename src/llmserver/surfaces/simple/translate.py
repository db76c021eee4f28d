"""The simple endpoints' wire format <-> the core: requests with the documents' defaults in,
response bodies and stream chunks out (the fallback's too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from llmserver.config.settings import Settings
from llmserver.core.generation import Generation
from llmserver.core.requests import ChatRequest, Message, Sampling, TextRequest
from llmserver.core.usage import Usage
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.simple.schemas import GenerateRequest, InferRequest


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def clean_query(query: str) -> str:
    """Whitespace runs collapsed to one space; a blank query is a 400."""
    text = " ".join(query.split())
    if not text:
        raise InvalidRequestError("query must not be blank", param="query", code="invalid_value")
    return text


def infer_request(settings: Settings, req: InferRequest, query: str) -> ChatRequest:
    """``/infer``: ``query`` (already cleaned and masked) as a user turn, with seed 004's
    defaults (``infer_*``) for what the request leaves out."""
    if req.num_return_sequences > settings.max_n:
        raise InvalidRequestError(
            f"num_return_sequences must be at most {settings.max_n}",
            param="num_return_sequences",
            code="invalid_value",
        )
    sampling = Sampling(
        max_tokens=_given(req.max_length, settings.infer_max_length),
        temperature=_given(req.temperature, settings.infer_temperature),
        top_p=_given(req.top_p, settings.infer_top_p),
    )
    return ChatRequest(None, (Message("user", query),), sampling, n=req.num_return_sequences)


def _generate_sampling(settings: Settings, req: GenerateRequest) -> Sampling:
    return Sampling(
        max_tokens=_given(req.max_tokens, settings.generate_max_tokens),
        temperature=_given(req.temperature, settings.generate_temperature),
        top_k=_given(req.top_k, settings.generate_top_k),
    )


def generate_request(settings: Settings, req: GenerateRequest) -> TextRequest:
    """``/generate``: a plain continuation, with seed 002's defaults (``generate_*``)."""
    return TextRequest(req.model, (req.prompt,), _generate_sampling(settings, req))


def chat_request(settings: Settings, req: GenerateRequest) -> ChatRequest:
    """``/chat``: the prompt as a user turn, rendered the configured ``chat_prompt_format`` way
    (the chat template, the ``[QUESTION]`` wrap or a format string)."""
    sampling = _generate_sampling(settings, req)
    return ChatRequest(req.model, (Message("user", req.prompt),), sampling, use_prompt_format=True)


# -- responses ---------------------------------------------------------------------------------


def infer_body(texts: list[str]) -> dict[str, Any]:
    """``{"generated_text"}``, and every text as ``generated_texts`` when there are several."""
    body: dict[str, Any] = {"generated_text": texts[0]}
    if len(texts) > 1:
        body["generated_texts"] = texts
    return body


def usage_body(usage: Usage) -> dict[str, int]:
    """Token counts in OpenAI's names, as the module rules ask."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def generate_body(prompt: str, shown: str, generated: str) -> dict[str, str]:
    """``{prompt, generated, full_text}``: ``full_text`` is ``shown`` (the prompt as the model
    continued it) followed by the generated text."""
    return {"prompt": prompt, "generated": generated, "full_text": shown + generated}


async def generate_response(gen: Generation) -> dict[str, str]:
    """Run a ``/generate`` or ``/chat`` generation to its end: its body. ``prompt`` is the
    input as it reached the model (masked where masking applies); ``full_text`` starts with the
    rendered prompt (the chat template or the wrap on ``/chat``)."""
    generated = (await gen.collect()).texts[0]
    prompt = gen.inputs[0]
    shown = gen.prompts[0] if gen.prompts and gen.prompts[0] else prompt
    return generate_body(prompt, shown, generated)


async def infer_chunks(gen: Generation, texts: list[str]) -> AsyncIterator[dict[str, Any]]:
    """``/infer/stream`` chunks: ``{"index", "text"}`` pieces, ``{"index", "finish_reason"}``
    per choice, then the whole result with usage. ``texts`` collects each choice's text (for the
    log line, however the stream ends)."""
    texts[:] = [""] * gen.n_choices
    async for index, delta in gen.events():
        if delta.text:
            texts[index] += delta.text
            yield {"index": index, "text": delta.text}
        if delta.finish_reason is not None:
            yield {"index": index, "finish_reason": delta.finish_reason}
    yield {**infer_body(texts), "usage": usage_body(gen.usage)}


async def fallback_chunks(text: str, usage: Usage) -> AsyncIterator[dict[str, Any]]:
    """The fallback text as an ``/infer/stream`` stream of one choice."""
    yield {"index": 0, "text": text}
    yield {"index": 0, "finish_reason": "stop"}
    yield {**infer_body([text]), "usage": usage_body(usage)}
