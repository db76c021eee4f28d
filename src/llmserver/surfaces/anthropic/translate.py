"""Anthropic's Messages API <-> the core: requests in, messages, stream events and errors out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from llmserver.core.events import Delta
from llmserver.core.generation import Generation
from llmserver.core.requests import ChatRequest, JsonConstraint, Message, Sampling, Thinking
from llmserver.core.usage import Usage
from llmserver.errors import APIError, InvalidRequestError
from llmserver.http.streaming import Framing, named_event
from llmserver.surfaces.anthropic import tools
from llmserver.surfaces.anthropic.schemas import (
    CountTokensRequest,
    MessagesRequest,
    TextBlock,
    _Conversation,
)

logger = logging.getLogger("llmserver.anthropic")

#: how text blocks of one turn (or of ``system``) are joined into the turn's text
BLOCK_SEPARATOR = tools.BLOCK_SEPARATOR

# -- errors ------------------------------------------------------------------------------------

#: Anthropic's error type for each HTTP status this server answers with
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_type(err: APIError) -> str:
    """Anthropic's ``error.type`` for ``err``: by status, a timed-out generation is a
    ``timeout_error``, other 4xx are ``invalid_request_error`` (as Anthropic documents)."""
    if err.code == "timeout":
        return "timeout_error"
    if err.status in _ERROR_TYPES:
        return _ERROR_TYPES[err.status]
    return "invalid_request_error" if 400 <= err.status < 500 else "api_error"


def anthropic_error(err: APIError) -> dict[str, Any]:
    """Anthropic's error envelope: ``{"type": "error", "error": {"type", "message"}}``."""
    return {"type": "error", "error": {"type": error_type(err), "message": err.message}}


#: Anthropic's server-sent events: each named by its type, keep-alives as ``ping`` events,
#: nothing after ``message_stop``, an error after the first byte as ``event: error``
ANTHROPIC_SSE = Framing(
    "text/event-stream",
    named_event,
    b"",
    named_event({"type": "ping"}),
    anthropic_error,
)

# -- requests ----------------------------------------------------------------------------------


def _text(content: str | list[TextBlock], where: str) -> str:
    if isinstance(content, str):
        return content
    return BLOCK_SEPARATOR.join(block.text for block in content)


def _refuse_unsupported(req: _Conversation) -> None:
    if req.mcp_servers:
        raise InvalidRequestError(
            "mcp_servers: MCP servers are not supported by this server",
            param="mcp_servers",
            code="unsupported_parameter",
        )
    if unknown := req.unknown_fields():
        logger.debug("ignoring unknown request fields: %s", ", ".join(unknown))


def _join(turns: list[Message], message: Message) -> None:
    """Add a turn; consecutive turns of one role become one, as Anthropic combines them."""
    last = turns[-1] if turns else None
    if last is None or last.role != message.role or message.role == "tool":
        turns.append(message)
        return
    text = BLOCK_SEPARATOR.join(t for t in (last.content, message.content) if t)
    calls = last.tool_calls + message.tool_calls
    turns[-1] = Message(
        last.role, text, tool_calls=calls, reasoning=last.reasoning + message.reasoning
    )


def _messages(req: _Conversation) -> tuple[Message, ...]:
    """The system prompt first, then the turns: an assistant's ``tool_use`` blocks are its
    calls, a user's ``tool_result`` blocks are tool messages (before the user's text). A last
    turn by the assistant would be a prefill, which this server cannot continue: a 400, as
    Anthropic answers for models without prefill."""
    turns: list[Message] = []
    calls: set[str] = set()
    for i, message in enumerate(req.messages):
        role = message.role
        where = f"messages.{i}.content"
        if role not in ("user", "assistant"):
            logger.warning("messages.%d has role '%s'; treated as 'user'", i, role)
            role = "user"
        if role == "assistant":
            text, made, thought = tools.assistant_turn(message.content, where)
            calls.update(call.id for call in made)
            _join(turns, Message("assistant", text, tool_calls=made, reasoning=thought))
            continue
        results, user_text = tools.user_turn(message.content, where, calls)
        for result in results:
            _join(turns, result)
        if user_text is not None:
            _join(turns, Message("user", user_text))
    if turns[-1].role == "assistant":
        raise InvalidRequestError(
            "messages: prefill (a last message by the assistant) is not supported by this "
            "server; end with a user message",
            param="messages",
            code="prefill_not_supported",
        )
    system = _text(req.system, "system") if req.system is not None else ""
    return ((Message("system", system),) if system else ()) + tuple(turns)


def chat_request(req: MessagesRequest) -> ChatRequest:
    """The core's chat request, tools and tool use included."""
    _refuse_unsupported(req)
    tool_list, choice, parallel = tools.tools(req)
    sampling = Sampling(
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        stop=tuple(s for s in req.stop_sequences or () if s),
        ignore_eos=req.ignore_eos,
    )
    fmt = req.output_config.format if req.output_config is not None else None
    constraint = JsonConstraint(fmt.schema_ or None) if fmt is not None else None
    return ChatRequest(
        req.model,
        _messages(req),
        sampling,
        1,
        constraint,
        tools=tool_list,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        thinking=_thinking(req),
    )


def _thinking(req: MessagesRequest) -> Thinking:
    """``thinking``: ``enabled`` with its ``budget_tokens``, ``adaptive`` (the model's own
    budget) or ``disabled``; absent: the model's default."""
    config = req.thinking
    if config is None:
        return Thinking()
    if config.type == "disabled":
        return Thinking(enabled=False)
    return Thinking(enabled=True, budget=config.budget_tokens)


def count_request(req: CountTokensRequest) -> ChatRequest:
    """The core's chat request whose prompt is to be counted (tools included)."""
    _refuse_unsupported(req)
    tool_list, choice, parallel = tools.tools(req)
    return ChatRequest(
        req.model,
        _messages(req),
        tools=tool_list,
        tool_choice=choice,
        parallel_tool_calls=parallel,
    )


# -- responses ---------------------------------------------------------------------------------


def message_id(gen: Generation) -> str:
    """``msg_`` and the random part of the generation's own id (one id per generation)."""
    return "msg_" + gen.id.rpartition("-")[2]


def stop_reason(finish: str | None, stop_sequence: str | None) -> str:
    """Anthropic's ``stop_reason`` for a finish reason and the stop string hit, if any."""
    if stop_sequence is not None:
        return "stop_sequence"
    if finish == "tool_calls":
        return "tool_use"
    return "max_tokens" if finish == "length" else "end_turn"


def usage_body(usage: Usage) -> dict[str, int]:
    """Anthropic's ``usage``: the prompt and generated token counts."""
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}


def _message(gen: Generation, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": message_id(gen),
        "type": "message",
        "role": "assistant",
        "model": gen.model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage_body(gen.usage),
    }


async def message_response(gen: Generation) -> dict[str, Any]:
    """Run ``gen`` to its end: the ``message`` object."""
    result = await gen.collect()
    text, calls = result.texts[0], result.tool_calls[0] if result.tool_calls else []
    thought = result.reasonings[0] if result.reasonings else ""
    content: list[dict[str, Any]] = []
    if thought:
        content.append({"type": "thinking", "thinking": thought, "signature": ""})
    content += [{"type": "text", "text": text}] if text or not calls else []
    content += [tools.tool_use_block(call) for call in calls]
    body = _message(gen, content)
    stop = result.stop_sequences[0] if result.stop_sequences else None
    body["stop_reason"] = stop_reason(result.finish_reasons[0], stop)
    body["stop_sequence"] = stop
    return body


async def message_events(gen: Generation) -> AsyncIterator[dict[str, Any]]:
    """The stream's events in Anthropic's order: ``message_start``; for each content block
    ``content_block_start`` (``ping`` after the first), its deltas (``text_delta``, or
    ``input_json_delta`` fragments of a ``tool_use`` block's input) and ``content_block_stop``;
    then ``message_delta`` (stop reason, usage) and ``message_stop``.

    The first event waits for the first event of the generation, so that everything that can
    fail before it (the wait for a slot, the prompt too long) is a proper HTTP status, and the
    ``message_start`` usage has the real input token count.
    """
    started = False
    end: Delta | None = None
    blocks = tools.StreamBlocks()
    async for _, delta in gen.events():
        if not started:
            started = True
            yield _start(gen)
        if delta.finish_reason is not None:
            end = delta
        if delta.reasoning:
            for event in blocks.thinking(delta.reasoning):
                yield event
        if delta.text:
            for event in blocks.text(delta.text):
                yield event
        for piece in delta.tool_calls:
            for event in blocks.call(piece):
                yield event
    if not started:
        yield _start(gen)
    for event in blocks.finish():
        yield event
    finish = end.finish_reason if end is not None else None
    stop = end.stop_sequence if end is not None else None
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason(finish, stop), "stop_sequence": stop},
        "usage": usage_body(gen.usage),
    }
    yield {"type": "message_stop"}


def _start(gen: Generation) -> dict[str, Any]:
    """``message_start``: no content, no stop reason yet."""
    return {"type": "message_start", "message": _message(gen, [])}
