"""Tool calling in Ollama's words <-> the core's tool types.

Ollama's tools are OpenAI's function list; a call's ``arguments`` is a JSON object rather
than JSON text, and a ``tool`` message names the tool it answers (``tool_name``) instead of a
call id. Ollama has no ``tool_choice``: with tools the model may call them (``auto``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llmserver.core.events import ToolCallDelta
from llmserver.core.generation import add_call_delta
from llmserver.core.requests import Message, Tool, ToolCall, ToolChoice
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.ollama import schemas as wire

_ROLES = frozenset({"system", "user", "assistant", "tool"})


def tools(req: wire.ChatRequest) -> tuple[tuple[Tool, ...], ToolChoice]:
    """The core's tools and tool choice (``auto`` with tools, else ``none``)."""
    out = []
    for i, tool in enumerate(req.tools or ()):
        if tool.type != "function":
            raise InvalidRequestError(
                f"tools[{i}]: tools of type '{tool.type}' are not supported; send 'function' tools",
                param=f"tools[{i}].type",
            )
        fn = tool.function
        out.append(Tool(fn.name, fn.description, fn.parameters))
    return tuple(out), ToolChoice("auto" if out else "none")


class _Calls:
    """The calls made so far in a conversation, to find the one a ``tool`` message answers."""

    def __init__(self) -> None:
        self.known: dict[str, ToolCall] = {}
        #: the latest assistant turn's calls that no tool message has answered yet
        self.pending: list[ToolCall] = []
        self.latest: dict[str, str] = {}

    def made(self, calls: Sequence[ToolCall]) -> None:
        self.pending = list(calls)
        for call in calls:
            self.known[call.id] = call
            self.latest[call.name] = call.id

    def answered(self, i: int, message: wire.Message) -> str:
        """The id of the call ``message`` answers: its ``tool_call_id`` when it has one, else
        the first unanswered call of the tool it names (or of any tool when it names none),
        else the latest call of that tool."""
        if message.tool_call_id:
            self._drop(message.tool_call_id)
            return message.tool_call_id  # the core checks that it matches a call
        name = message.tool_name
        for call in self.pending:
            if name is None or call.name == name:
                self._drop(call.id)
                return call.id
        if name is not None and name in self.latest:
            return self.latest[name]
        what = f"tool_name '{name}'" if name is not None else "a tool message without tool_name"
        raise InvalidRequestError(
            f"messages[{i}]: {what} answers no earlier tool call", param="messages"
        )

    def _drop(self, call_id: str) -> None:
        self.pending = [c for c in self.pending if c.id != call_id]


def _calls(i: int, message: wire.Message) -> tuple[ToolCall, ...]:
    """An assistant message's calls; one without an id gets one from its place."""
    return tuple(
        ToolCall(
            call.id or f"call_{i}_{j}",
            call.function.name,
            json.dumps(call.function.arguments, ensure_ascii=False),
        )
        for j, call in enumerate(message.tool_calls or ())
    )


def messages(model: str, req: wire.ChatRequest) -> tuple[Message, ...]:
    """The core's turns: assistant calls with ids, tool results tied to the calls."""
    turns = []
    seen = _Calls()
    for i, message in enumerate(req.messages):
        if message.images:
            raise InvalidRequestError(f'"{model}" does not support images', param="images")
        if message.role not in _ROLES:
            raise InvalidRequestError(
                f"messages[{i}]: invalid role '{message.role}'", param="messages"
            )
        if message.tool_calls and message.role != "assistant":
            raise InvalidRequestError(
                f"messages[{i}]: only assistant messages carry tool_calls", param="messages"
            )
        if message.role == "tool":
            call_id = seen.answered(i, message)
            turns.append(Message("tool", message.content, tool_call_id=call_id))
            continue
        calls = _calls(i, message)
        if calls:
            seen.made(calls)
        thought = message.thinking or ""
        turns.append(Message(message.role, message.content, tool_calls=calls, reasoning=thought))
    return tuple(turns)


# -- responses ---------------------------------------------------------------------------------


def call_body(index: int, call: ToolCall) -> dict[str, Any]:
    """One entry of ``message.tool_calls``."""
    function = {"index": index, "name": call.name, "arguments": call.arguments_object()}
    return {"id": call.id, "function": function}


class CallAssembler:
    """Whole calls out of streamed pieces (a call may come in several argument fragments):
    a call is complete once a later one begins, or the reply ends."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []
        self._sent = 0

    def add(self, pieces: Sequence[ToolCallDelta]) -> None:
        """Fold in streamed pieces."""
        for piece in pieces:
            add_call_delta(self.calls, piece)

    def complete(self, finished: bool) -> list[dict[str, Any]]:
        """The calls complete now (all once ``finished``) and not yet returned, in Ollama's
        shape."""
        done = len(self.calls) if finished else max(len(self.calls) - 1, self._sent)
        out = [call_body(k, self.calls[k]) for k in range(self._sent, done)]
        self._sent = done
        return out

    def bodies(self) -> list[dict[str, Any]]:
        """Every call, in Ollama's shape."""
        return [call_body(k, call) for k, call in enumerate(self.calls)]
