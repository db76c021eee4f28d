"""OpenAI's wire format <-> the core: requests in, response bodies and stream chunks out."""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any

from llmserver.backends.base import JsonConstraint
from llmserver.core.embeddings import EmbedResult
from llmserver.core.generation import Generation, Result
from llmserver.core.requests import (
    ChatRequest,
    EmbedRequest,
    Message,
    Sampling,
    TextRequest,
)
from llmserver.core.usage import Usage
from llmserver.core.views import ModelView
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.openai.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    _Request,
    _Sampling,
)

logger = logging.getLogger("llmserver.openai")

#: OpenAI fields that are accepted only at their "off" value, with what "off" is
_OFF: dict[str, tuple[Any, ...]] = {
    "logprobs": (None, False, 0),
    "top_logprobs": (None,),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "parallel_tool_calls": (None,),
    "suffix": (None, ""),
    "best_of": (None, 1),
}


def _refuse_unsupported(req: _Request) -> None:
    for name, off in _OFF.items():
        if name in type(req).model_fields and getattr(req, name) not in off:
            raise InvalidRequestError(
                f"'{name}' is not supported by this server.",
                param=name,
                code="unsupported_parameter",
            )
    if unknown := req.unknown_fields():
        logger.debug("ignoring unknown request fields: %s", ", ".join(unknown))


def _sampling(req: _Sampling, max_tokens: int | None) -> Sampling:
    return Sampling(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        repeat_penalty=req.repeat_penalty,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        seed=req.seed,
        stop=req.stop_list(),
        ignore_eos=req.ignore_eos,
    )


def _constraint(req: ChatCompletionRequest) -> JsonConstraint | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.json_schema is not None:
        return JsonConstraint(fmt.json_schema.schema_ or None)
    return JsonConstraint(None)


def chat_request(req: ChatCompletionRequest) -> ChatRequest:
    """The core's chat request; fields this server does not honour are a 400 naming them."""
    _refuse_unsupported(req)
    for i, message in enumerate(req.messages):
        for j, part in enumerate(message.content if isinstance(message.content, list) else []):
            if part.type != "text" or part.text is None:
                raise InvalidRequestError(
                    f"content parts of type '{part.type}' are not supported; send text parts",
                    param=f"messages[{i}].content[{j}]",
                    code="unsupported_content",
                )
    messages = tuple(
        Message("system" if m.role == "developer" else m.role, m.text(), m.name)
        for m in req.messages
    )
    return ChatRequest(
        req.model, messages, _sampling(req, req.token_limit()), req.n, _constraint(req)
    )


def text_request(req: CompletionRequest) -> TextRequest:
    """The core's text request."""
    _refuse_unsupported(req)
    return TextRequest(req.model, tuple(req.prompts()), _sampling(req, req.token_limit()), req.n)


def embed_request(req: EmbeddingRequest) -> EmbedRequest:
    """The core's embedding request."""
    _refuse_unsupported(req)
    return EmbedRequest(req.model, req.inputs(), req.dimensions)


# -- responses ---------------------------------------------------------------------------------


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat_body(gen: Generation, result: Result) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": result.finish_reasons[i],
        }
        for i, text in enumerate(result.texts)
    ]
    return {
        "id": gen.id,
        "object": "chat.completion",
        "created": gen.created,
        "model": gen.model,
        "choices": choices,
        "usage": usage_body(gen.usage),
        "system_fingerprint": None,
    }


def completion_body(gen: Generation, result: Result, echo: bool) -> dict[str, Any]:
    """A non-streaming ``text_completion`` body."""
    choices = [
        {
            "text": (gen.prompts[i] if echo else "") + text,
            "index": i,
            "logprobs": None,
            "finish_reason": result.finish_reasons[i],
        }
        for i, text in enumerate(result.texts)
    ]
    return {
        "id": gen.id,
        "object": "text_completion",
        "created": gen.created,
        "model": gen.model,
        "choices": choices,
        "usage": usage_body(gen.usage),
    }


async def chat_response(gen: Generation) -> dict[str, Any]:
    """Run ``gen`` to its end: the ``chat.completion`` body."""
    return chat_body(gen, await gen.collect())


async def completion_response(gen: Generation, echo: bool) -> dict[str, Any]:
    """Run ``gen`` to its end: the ``text_completion`` body."""
    return completion_body(gen, await gen.collect(), echo)


async def chat_chunks(gen: Generation, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    """``chat.completion.chunk`` objects: role first, content, finish_reason, optional usage."""
    head = {"id": gen.id, "object": "chat.completion.chunk", "created": gen.created}
    head["model"] = gen.model
    started: set[int] = set()

    def chunk(index: int, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    async for index, delta in gen.events():
        if index not in started:
            started.add(index)
            yield chunk(index, {"role": "assistant", "content": ""}, None)
        if delta.text:
            yield chunk(index, {"content": delta.text}, None)
        if delta.finish_reason is not None:
            yield chunk(index, {}, delta.finish_reason)
    if include_usage:
        yield {**head, "choices": [], "usage": usage_body(gen.usage)}


async def completion_chunks(
    gen: Generation, include_usage: bool, echo: bool
) -> AsyncIterator[dict[str, Any]]:
    """Streamed ``text_completion`` objects."""
    head = {"id": gen.id, "object": "text_completion", "created": gen.created}
    head["model"] = gen.model
    echoed: set[int] = set()
    async for index, delta in gen.events():
        text = delta.text
        if echo and index not in echoed:
            echoed.add(index)
            text = gen.prompts[index] + text
        if text or delta.finish_reason is not None:
            choice = {
                "text": text,
                "index": index,
                "logprobs": None,
                "finish_reason": delta.finish_reason,
            }
            yield {**head, "choices": [choice]}
    if include_usage:
        yield {**head, "choices": [], "usage": usage_body(gen.usage)}


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64 form: the vector as little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_body(result: EmbedResult, encoding_format: str) -> dict[str, Any]:
    """The embeddings ``list`` body."""
    data = [
        {
            "object": "embedding",
            "embedding": encode_base64(v) if encoding_format == "base64" else v,
            "index": i,
        }
        for i, v in enumerate(result.vectors)
    ]
    tokens = result.usage.prompt_tokens
    return {
        "object": "list",
        "data": data,
        "model": result.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_card(view: ModelView) -> dict[str, Any]:
    """A model object: OpenAI's fields, then server extras."""
    return {
        "id": view.id,
        "object": "model",
        "created": int(view.loaded_at),
        "owned_by": "llmserver",
        "backend": view.backend,
        "state": view.state,
        "aliases": list(view.aliases),
        "roles": list(view.roles),
        "error": view.error,
    }
