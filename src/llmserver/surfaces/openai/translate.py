"""OpenAI's wire format <-> the core: requests in, response bodies and stream chunks out."""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

from llmserver.core.embeddings import EmbedResult
from llmserver.core.events import TokenLogprob, ToolCallDelta
from llmserver.core.generation import Generation, Result
from llmserver.core.requests import (
    ChatRequest,
    EmbedRequest,
    InfillRequest,
    JsonConstraint,
    Message,
    Sampling,
    TextRequest,
    Tool,
    ToolCall,
    ToolChoice,
)
from llmserver.core.residency import DeviceUse
from llmserver.core.usage import Usage
from llmserver.core.views import ModelView
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.openai import reasoning
from llmserver.surfaces.openai.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    _Request,
    _Sampling,
)

logger = logging.getLogger("llmserver.openai")

#: OpenAI fields that are accepted only at their "off" value, with what "off" is
_OFF: dict[str, tuple[Any, ...]] = {
    "logit_bias": (None, {}),
    "functions": (None, []),
    "function_call": (None, "none"),
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


def _sampling(req: _Sampling, max_tokens: int | None, logprobs: int | None = None) -> Sampling:
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
        logprobs=logprobs,
    )


def _chat_logprobs(req: ChatCompletionRequest) -> int | None:
    """How many alternatives per token (None: no logprobs); ``top_logprobs`` needs
    ``logprobs``."""
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidRequestError("top_logprobs needs logprobs set to true", param="top_logprobs")
    return (req.top_logprobs or 0) if req.logprobs else None


def _tools(req: ChatCompletionRequest) -> tuple[tuple[Tool, ...], ToolChoice]:
    tools = tuple(
        Tool(f.name, f.description, f.parameters, f.strict)
        for f in (t.function for t in req.tools or [])
    )
    choice = req.tool_choice
    if choice is None:
        return tools, ToolChoice("auto" if tools else "none")
    if isinstance(choice, str):
        return tools, ToolChoice(choice)
    return tools, ToolChoice("function", choice.function.name)


def _message(message: ChatMessage) -> Message:
    calls = tuple(
        ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []
    )
    role = "system" if message.role == "developer" else message.role
    thought = reasoning.sent_back(message.reasoning_content, message.reasoning)
    return Message(role, message.text(), message.name, calls, message.tool_call_id, thought)


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
    tools, choice = _tools(req)
    return ChatRequest(
        req.model,
        tuple(_message(m) for m in req.messages),
        _sampling(req, req.token_limit(), _chat_logprobs(req)),
        req.n,
        _constraint(req),
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        documents=tuple(req.documents or ()),
        template_kwargs=req.chat_template_kwargs or {},
        thinking=reasoning.thinking(req),
    )


def text_request(req: CompletionRequest) -> TextRequest:
    """The core's text request."""
    _refuse_unsupported(req)
    sampling = _sampling(req, req.token_limit(), req.logprobs)
    return TextRequest(req.model, tuple(req.prompts()), sampling, req.n)


def infill_request(req: CompletionRequest) -> InfillRequest | None:
    """The core's fill-in-the-middle request when ``suffix`` is given (None: a plain
    completion): the prompt is the code before the hole, the suffix the code after it."""
    if req.suffix is None or req.suffix == "":
        return None
    _refuse_unsupported(req)
    if not isinstance(req.suffix, str):
        raise InvalidRequestError("'suffix' must be a string", param="suffix")
    prompts = req.prompts()
    if len(prompts) != 1:
        raise InvalidRequestError("'suffix' takes a single prompt", param="prompt")
    sampling = _sampling(req, req.token_limit(), req.logprobs)
    return InfillRequest(req.model, prompts[0], req.suffix, sampling, req.n)


def embed_request(req: EmbeddingRequest) -> EmbedRequest:
    """The core's embedding request."""
    _refuse_unsupported(req)
    return EmbedRequest(
        req.model,
        req.inputs(),
        req.dimensions,
        input_type=req.input_type,
        prompt_name=req.prompt_name,
    )


# -- responses ---------------------------------------------------------------------------------


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object; ``prompt_tokens_details`` when a prefix cache served part."""
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    if usage.reasoning_tokens:
        body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return body


def _top_entry(token: str, raw: bytes, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(raw)}


def chat_logprobs(items: list[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's chat ``logprobs`` object for some tokens."""
    content = [
        {
            **_top_entry(lp.token, lp.bytes, lp.logprob),
            "top_logprobs": [_top_entry(t.token, t.bytes, t.logprob) for t in lp.top],
        }
        for lp in items
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(items: list[TokenLogprob], offset: int) -> dict[str, Any]:
    """The completions API's ``logprobs`` object; ``offset`` is where the tokens' text starts."""
    offsets = []
    for lp in items:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in items],
        "token_logprobs": [lp.logprob for lp in items],
        "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in items],
        "text_offset": offsets,
    }


def tool_calls_body(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """A message's ``tool_calls``."""
    return [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for c in calls
    ]


def _chat_message(
    text: str, calls: list[ToolCall], thought: str = "", field: str = "reasoning_content"
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if thought:
        message.update(reasoning.message_fields(field, thought, text))
    if calls:
        message["content"] = message["content"] or None
        message["tool_calls"] = tool_calls_body(calls)
    return message


def chat_body(gen: Generation, result: Result, logprobs: bool = False) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body."""
    choices = [
        {
            "index": i,
            "message": _chat_message(
                text,
                result.tool_calls[i] if result.tool_calls else [],
                result.reasonings[i] if result.reasonings else "",
                gen.reasoning_field,
            ),
            "logprobs": chat_logprobs(result.logprobs[i]) if logprobs else None,
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


def completion_body(
    gen: Generation,
    result: Result,
    echo: bool,
    logprobs: bool = False,
    echoed: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A non-streaming ``text_completion`` body; ``echoed``: what ``echo`` gives back of each
    choice's prompt (None: the prompt the model read; a fill-in-the-middle prompt's prefix)."""
    prompts = gen.prompts if echoed is None else echoed
    choices = [
        {
            "text": (prompts[i] if echo else "") + text,
            "index": i,
            "logprobs": completion_logprobs(result.logprobs[i], len(prompts[i]) if echo else 0)
            if logprobs
            else None,
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


async def chat_response(gen: Generation, logprobs: bool = False) -> dict[str, Any]:
    """Run ``gen`` to its end: the ``chat.completion`` body."""
    return chat_body(gen, await gen.collect(), logprobs)


async def completion_response(
    gen: Generation, echo: bool, logprobs: bool = False, echoed: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run ``gen`` to its end: the ``text_completion`` body."""
    return completion_body(gen, await gen.collect(), echo, logprobs, echoed)


def tool_call_chunk(piece: ToolCallDelta) -> dict[str, Any]:
    """One ``delta.tool_calls`` entry: id, type and name in a call's first piece, then
    argument fragments."""
    if piece.id is not None:
        function = {"name": piece.name, "arguments": piece.arguments}
        return {"index": piece.index, "id": piece.id, "type": "function", "function": function}
    return {"index": piece.index, "function": {"arguments": piece.arguments}}


async def chat_chunks(
    gen: Generation, include_usage: bool, logprobs: bool = False
) -> AsyncIterator[dict[str, Any]]:
    """``chat.completion.chunk`` objects: role first, content or tool calls, finish_reason,
    optional usage."""
    head = {"id": gen.id, "object": "chat.completion.chunk", "created": gen.created}
    head["model"] = gen.model
    started: set[int] = set()
    fields: dict[int, reasoning.DeltaFields] = {}

    def chunk(
        index: int, delta: dict[str, Any], finish: str | None, lps: Any = None
    ) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": lps, "finish_reason": finish}
        return {**head, "choices": [choice]}

    async for index, delta in gen.events():
        if index not in started:
            started.add(index)
            fields[index] = reasoning.DeltaFields(gen.reasoning_field)
            yield chunk(index, {"role": "assistant", "content": ""}, None)
        body = fields[index](delta.reasoning, delta.text)
        if body or (logprobs and delta.logprobs):
            lps = chat_logprobs(list(delta.logprobs)) if logprobs else None
            yield chunk(index, body or {"content": ""}, None, lps)
        if delta.tool_calls:
            calls = [tool_call_chunk(piece) for piece in delta.tool_calls]
            yield chunk(index, {"tool_calls": calls}, None)
        if delta.finish_reason is not None:
            yield chunk(index, {}, delta.finish_reason)
    if include_usage:
        yield {**head, "choices": [], "usage": usage_body(gen.usage)}


async def completion_chunks(
    gen: Generation,
    include_usage: bool,
    echo: bool,
    logprobs: bool = False,
    echoed: Sequence[str] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Streamed ``text_completion`` objects (``echoed`` as for :func:`completion_body`)."""
    head = {"id": gen.id, "object": "text_completion", "created": gen.created}
    head["model"] = gen.model
    done: set[int] = set()
    offsets: dict[int, int] = {}
    async for index, delta in gen.events():
        text = delta.text
        if echo and index not in done:
            done.add(index)
            prompt = (gen.prompts if echoed is None else echoed)[index]
            text = prompt + text
            offsets[index] = len(prompt)
        if text or delta.finish_reason is not None or (logprobs and delta.logprobs):
            lps = None
            if logprobs:
                lps = completion_logprobs(list(delta.logprobs), offsets.get(index, 0))
                offsets[index] = offsets.get(index, 0) + sum(len(t.token) for t in delta.logprobs)
            choice = {
                "text": text,
                "index": index,
                "logprobs": lps,
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


def memory_use(uses: Sequence[DeviceUse]) -> dict[str, Any]:
    """Each device's memory budget (None: no limit) and the bytes loaded models hold on it."""
    return {u.device: {"budget": u.budget, "used": u.used} for u in uses}


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
        "context_length": view.context_length,
        "max_model_len": view.context_length,
        "capabilities": list(view.capabilities),
        "memory": {
            "bytes": dict(view.memory),
            "measured": view.memory_measured,
            "estimate": dict(view.memory_estimate),
        },
    }
