"""Ollama's wire format <-> the core: requests in; stream objects, final objects and model
listings out. Durations are nanoseconds and times RFC 3339 with nanoseconds, as Ollama's."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from llmserver.core.created import Recipe
from llmserver.core.generation import Generation
from llmserver.core.model_info import ModelDetails
from llmserver.core.requests import ChatRequest, InfillRequest, Message, TextRequest, Thinking
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.ollama import options, tools
from llmserver.surfaces.ollama import schemas as wire
from llmserver.surfaces.ollama.modelfile import render as render_modelfile

logger = logging.getLogger("llmserver.ollama")

Kind = Literal["chat", "generate"]
#: the Ollama API version this surface follows (``GET /api/version``)
OLLAMA_VERSION = "0.9.0"
#: what Ollama shows as ``expires_at`` for a model kept loaded forever
_FOREVER_S = (2**63 - 1) / 1e9
#: 9999-12-31T23:59:59Z, the last second RFC 3339 can write
_LAST_SECOND = 253402300799


def rfc3339(when: float | None = None) -> str:
    """A Unix time (now when None) as RFC 3339 in UTC with nanoseconds."""
    ns = time.time_ns() if when is None else int(when * 1e9)
    seconds, frac = divmod(ns, 1_000_000_000)
    if seconds > _LAST_SECOND:  # beyond what gmtime formats everywhere
        seconds = _LAST_SECOND
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{frac:09d}Z"


class _Clock:
    """``rfc3339()`` of now for each piece of one stream, formatting the date once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        seconds, frac = divmod(time.time_ns(), 1_000_000_000)
        if seconds != self._second:
            self._second = seconds
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{self._prefix}.{frac:09d}Z"


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def _refuse(model: str, req: wire._Generating) -> None:
    if unknown := req.unknown_fields():
        logger.debug("ignoring unknown request fields: %s", ", ".join(unknown))
    if req.logprobs or req.top_logprobs:
        raise InvalidRequestError("logprobs are not supported by this server", param="logprobs")


def thinking(req: wire._Generating) -> Thinking:
    """Ollama's ``think``: a boolean, or a level (``low``, ``medium``, ``high`` are the
    server's budgets; ``max`` thinks without one). Asking a model that cannot think is
    Ollama's 400 (``strict``)."""
    think = req.think
    if think is None or think == "":
        return Thinking(strict=True)
    if isinstance(think, bool):
        return Thinking(enabled=think, strict=True)
    if think == "max":
        return Thinking(enabled=True, strict=True)
    levels: dict[str, Literal["low", "medium", "high"]] = {
        "low": "low",
        "medium": "medium",
        "high": "high",
    }
    if think in levels:
        return Thinking(enabled=True, effort=levels[think], strict=True)
    raise InvalidRequestError(
        f"invalid think value: {think!r} (true, false, low, medium, high or max)", param="think"
    )


def generate_request(
    req: wire.GenerateRequest, model: str
) -> ChatRequest | TextRequest | InfillRequest:
    """A non-raw generate is a one-turn chat (the model's template, ``system`` first); a raw
    one is a plain continuation of the prompt; one with a ``suffix`` is the code for the hole
    between the prompt and the suffix (fill-in-the-middle, refused by the core with
    Ollama's "does not support insert" for a model without a FIM format)."""
    _refuse(model, req)
    if req.images:
        raise InvalidRequestError(f'"{model}" does not support images', param="images")
    if req.suffix:
        sampling = options.sampling(req.options)
        return InfillRequest(model, req.prompt, req.suffix, sampling)
    if req.raw and (req.template or req.system or req.context):
        raise InvalidRequestError("raw mode does not support template, system, or context")
    if req.template:
        raise InvalidRequestError(
            "template is not supported by this server: the model's own chat template is used",
            param="template",
        )
    if req.context:
        raise InvalidRequestError(
            "context is not supported by this server: send the conversation to /api/chat",
            param="context",
        )
    sampling = options.sampling(req.options)
    constraint = options.constraint(req.format)
    if req.raw:
        return TextRequest(model, (req.prompt,), sampling, constraint=constraint)
    turns = [Message("system", req.system)] if req.system else []
    turns.append(Message("user", req.prompt))
    return ChatRequest(model, tuple(turns), sampling, constraint=constraint, thinking=thinking(req))


def chat_request(req: wire.ChatRequest, model: str) -> ChatRequest:
    """The core's chat request: tools (``auto``), calls and tool results mapped; images are
    refused by name."""
    _refuse(model, req)
    tool_list, choice = tools.tools(req)
    sampling = options.sampling(req.options)
    return ChatRequest(
        model,
        tools.messages(model, req),
        sampling,
        constraint=options.constraint(req.format),
        tools=tool_list,
        tool_choice=choice,
        thinking=thinking(req),
    )


# -- responses ---------------------------------------------------------------------------------


def metrics(gen: Generation) -> dict[str, int]:
    """The final object's counts and nanosecond durations, from the generation's own timing:
    the prompt is evaluated from the slot to the first token, the rest is generation."""
    t = gen.timing
    now = time.perf_counter()
    end = t.finished or now
    first = t.first_token or end
    start = t.prompt_started or t.started
    return {
        "total_duration": _ns(now - t.started),
        "load_duration": _ns(t.load_s),
        "prompt_eval_count": max(0, gen.usage.prompt_tokens - gen.usage.cached_tokens),
        "prompt_eval_duration": _ns(first - start),
        "eval_count": gen.usage.completion_tokens,
        "eval_duration": _ns(end - first),
    }


def _piece(
    kind: Kind,
    name: str,
    text: str,
    calls: list[dict[str, Any]] | None = None,
    thought: str = "",
    when: str | None = None,
) -> dict[str, Any]:
    head: dict[str, Any] = {"model": name, "created_at": when or rfc3339()}
    if kind == "chat":
        head["message"] = {"role": "assistant", "content": text}
        if thought:
            head["message"]["thinking"] = thought
        if calls:
            head["message"]["tool_calls"] = calls
    else:
        head["response"] = text
        if thought:
            head["thinking"] = thought
    return head


def control(kind: Kind, name: str, reason: Literal["load", "unload"]) -> dict[str, Any]:
    """The answer to a load or unload request (an empty prompt or message list)."""
    return {**_piece(kind, name, ""), "done": True, "done_reason": reason}


async def chunks(
    gen: Generation,
    kind: Kind,
    name: str,
    *,
    stream: bool,
    context: bool,
    after: Callable[[], None],
) -> AsyncIterator[dict[str, Any]]:
    """Ollama's objects for ``gen``: each piece of text (when streaming), then the final one
    with ``done_reason``, the metrics and, for a non-raw generate, ``context``. Without
    ``stream`` the final object carries the whole text. ``after`` runs once it is done."""
    text: list[str] = []
    thoughts: list[str] = []
    reason = "stop"
    chat = kind == "chat"
    clock = _Clock()
    calls = tools.CallAssembler()
    async for _, delta in gen.events():
        thoughts.append(delta.reasoning)
        if delta.text or delta.reasoning:
            text.append(delta.text)
            if stream:
                piece = _piece(kind, name, delta.text, None, delta.reasoning, clock.now())
                yield {**piece, "done": False}
        finished = delta.finish_reason is not None
        calls.add(delta.tool_calls)
        if stream and chat and (done := calls.complete(finished)):
            called: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": done}
            yield {"model": name, "created_at": clock.now(), "message": called, "done": False}
        if finished:
            # Ollama ends a reply that called tools with "stop"
            reason = "stop" if delta.finish_reason == "tool_calls" else str(delta.finish_reason)
    whole = "".join(text)
    thought = "".join(thoughts)
    body = (
        _piece(kind, name, "", None)
        if stream
        else _piece(kind, name, whole, calls.bodies(), thought)
    )
    final = {**body, "done": True, "done_reason": reason}
    final |= metrics(gen)
    if context and gen.prompts and (tokens := gen.tokens(gen.prompts[0] + whole)) is not None:
        final["context"] = tokens
    after()
    yield final


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The last object of a non-streaming answer."""
    last: dict[str, Any] = {}
    async for chunk in chunks:
        last = chunk
    return last


def _display(model_id: str) -> str:
    return model_id if ":" in model_id else f"{model_id}:latest"


def details_body(info: ModelDetails) -> dict[str, Any]:
    """Ollama's ``details`` object."""
    body: dict[str, Any] = {
        "parent_model": "",
        "format": info.format,
        "family": info.family,
        "families": [info.family] if info.family else None,
        "parameter_size": info.parameter_size,
        "quantization_level": info.quantization,
    }
    return body


def tag_entry(info: ModelDetails) -> dict[str, Any]:
    """One model of ``/api/tags``."""
    name = _display(info.view.id)
    return {
        "name": name,
        "model": name,
        "modified_at": rfc3339(info.modified_at),
        "size": info.size,
        "digest": info.digest,
        "details": details_body(info),
    }


def ps_entry(info: ModelDetails, expires_at: float | None) -> dict[str, Any]:
    """One model of ``/api/ps``; ``expires_at`` None is "never" (Ollama's far future)."""
    name = _display(info.view.id)
    when = expires_at if expires_at is not None else time.time() + _FOREVER_S
    return {
        "name": name,
        "model": name,
        # what the model holds in memory (measured over its load), as Ollama reports it
        "size": sum(bytes_ for _, bytes_ in info.view.memory) or info.size,
        "digest": info.digest,
        "details": details_body(info),
        "expires_at": rfc3339(when),
        "size_vram": sum(bytes_ for device, bytes_ in info.view.memory if device != "host"),
        "context_length": info.context_length or 0,
    }


#: the capability names Ollama's clients know (it has no ``chat``: ``completion`` covers it),
#: and ``rerank``, which Ollama's users have asked for under that name (its issue 3368)
OLLAMA_CAPABILITIES = frozenset(
    {"completion", "tools", "insert", "vision", "embedding", "thinking", "rerank"}
)


def show_body(info: ModelDetails, made: Recipe | None = None) -> dict[str, Any]:
    """``/api/show``: the chat template, parameters, details, GGUF metadata, capabilities."""
    params = dict(info.parameters)
    if info.context_length:
        params["num_ctx"] = info.context_length
    parameters = "\n".join(f"{k:<30} {v}" for k, v in params.items())
    template = info.chat_template or ""
    modelfile = f"# Modelfile generated by llmserver\nFROM {info.view.id}\n"
    modelfile += "".join(f"PARAMETER {k} {v}\n" for k, v in params.items())
    meta = {k: v for k, v in info.metadata.items() if k != "tokenizer.chat_template"}
    if made is not None:
        modelfile = render_modelfile(made, params)
    return {
        "modelfile": modelfile,
        "parameters": parameters,
        "template": template,
        "details": details_body(info),
        "model_info": meta,
        "capabilities": [c for c in info.capabilities if c in OLLAMA_CAPABILITIES],
        "modified_at": rfc3339(info.modified_at),
    }
