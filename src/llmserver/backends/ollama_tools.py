"""Tool calling through an Ollama server: OpenAI-shaped messages and tools in Ollama's shape,
and Ollama's whole tool calls back as tool-call pieces.

Ollama takes OpenAI's tool list, wants a call's arguments as a JSON object and a tool result
to name its tool (``tool_name``); it has no ``tool_choice``, so only ``auto`` (and ``none``,
by sending no tools) can be served.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from llmserver.backends.base import ToolCallDelta
from llmserver.errors import InvalidRequestError, UpstreamError


def ollama_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-shaped messages in Ollama's shape: a call's arguments as a JSON object, and a
    ``tool`` message naming the tool it answers (``tool_name``) beside its ``tool_call_id``."""
    names: dict[str, str] = {}
    out = []
    for message in messages:
        item = dict(message)
        if item.get("content") is None:
            item["content"] = ""
        if thought := item.pop("reasoning_content", None):
            item["thinking"] = thought  # an earlier turn's thought, under Ollama's name
        if calls := item.get("tool_calls"):
            item["tool_calls"] = [_ollama_call(call) for call in calls]
            names |= {call["id"]: call["function"]["name"] for call in calls}
        if item.get("role") == "tool" and item.get("tool_call_id") in names:
            item["tool_name"] = names[item["tool_call_id"]]
        out.append(item)
    return out


def _ollama_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call["function"]
    text = function.get("arguments") or "{}"
    try:
        arguments = orjson.loads(text) if isinstance(text, str) else text
    except orjson.JSONDecodeError:
        raise InvalidRequestError(
            f"the arguments of tool call '{call.get('id')}' are not JSON; Ollama takes an object",
            param="messages",
        ) from None
    return {"id": call.get("id"), "function": {"name": function["name"], "arguments": arguments}}


def ollama_tools(
    tools: Sequence[Mapping[str, Any]], choice: str | Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The tools to send: Ollama's list is OpenAI's. Ollama has no ``tool_choice``: ``none``
    sends no tools, and a call Ollama cannot be made to write is a 400."""
    if not tools or choice == "none":
        return []
    if choice not in (None, "auto"):
        shown = choice if isinstance(choice, str) else "a named function"
        raise InvalidRequestError(
            f"tool_choice {shown!r} cannot be served by an Ollama model: Ollama cannot be made "
            "to call a tool; use 'auto'",
            param="tool_choice",
        )
    return [dict(tool) for tool in tools]


def relayed_calls(message: Mapping[str, Any], start: int) -> tuple[ToolCallDelta, ...]:
    """Ollama's ``message.tool_calls`` (whole calls, arguments as objects) as tool-call
    pieces numbered from ``start``."""
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise UpstreamError("Ollama sent tool_calls that are not a list")
    out = []
    for k, call in enumerate(calls, start=start):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise UpstreamError("Ollama sent a tool call without a function name")
        arguments = orjson.dumps(function.get("arguments") or {}).decode()
        call_id = call.get("id") or f"call_{uuid.uuid4().hex[:24]}"
        out.append(ToolCallDelta(k, call_id, function["name"], arguments))
    return tuple(out)
