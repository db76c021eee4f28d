"""Tool use in Anthropic's words <-> the core's tool types.

``tools`` (``name``, ``description``, ``input_schema``) are the core's tools; ``tool_choice``
``auto`` / ``any`` / ``tool`` / ``none`` is the core's ``auto`` / ``required`` / a named
function / ``none``; an assistant's ``tool_use`` blocks are its calls and a user's
``tool_result`` blocks are ``tool`` messages; a reply's calls come back as ``tool_use``
blocks, streamed as ``input_json_delta`` fragments.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from typing import Any

from llmserver.core.events import ToolCallDelta
from llmserver.core.requests import Message, Tool, ToolCall, ToolChoice
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.anthropic.schemas import ContentBlock, _Conversation

#: how text blocks of one turn are joined into the turn's text
BLOCK_SEPARATOR = "\n\n"
#: what a failed tool's result says first (the core's tool messages have no error flag)
ERROR_PREFIX = "Error: "


def tools(req: _Conversation) -> tuple[tuple[Tool, ...], ToolChoice, bool]:
    """The core's tools, tool choice and whether parallel calls are allowed."""
    out = []
    for i, tool in enumerate(req.tools or ()):
        if tool.type not in (None, "custom"):
            raise InvalidRequestError(
                f"tools.{i}: server tools (type '{tool.type}') are not supported by this "
                "server; send client tools with an input_schema",
                param=f"tools.{i}.type",
                code="unsupported_parameter",
            )
        if tool.input_schema is None:
            raise InvalidRequestError(
                f"tools.{i}.input_schema: Field required", param=f"tools.{i}.input_schema"
            )
        out.append(Tool(tool.name, tool.description, tool.input_schema))
    names = {t.name for t in out}
    choice = req.tool_choice
    if choice is None:
        return tuple(out), ToolChoice("auto" if out else "none"), True
    parallel = not choice.disable_parallel_tool_use
    if choice.type in ("any", "tool") and not out:
        raise InvalidRequestError(
            f"tool_choice: type '{choice.type}' needs tools", param="tool_choice"
        )
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequestError(
                "tool_choice.name: Field required for type 'tool'", param="tool_choice.name"
            )
        if choice.name not in names:
            raise InvalidRequestError(
                f"tool_choice.name: '{choice.name}' is not among the tools",
                param="tool_choice.name",
            )
        return tuple(out), ToolChoice("function", choice.name), parallel
    if choice.type == "any":
        return tuple(out), ToolChoice("required"), parallel
    return tuple(out), ToolChoice("auto" if choice.type == "auto" and out else "none"), parallel


def _refuse(block: ContentBlock, where: str, served: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{where}: content blocks of type '{block.type}' are not supported by this server "
        f"here; send {served} blocks",
        param=f"{where}.type",
        code="unsupported_content",
    )


def assistant_turn(
    content: str | list[ContentBlock], where: str
) -> tuple[str, tuple[ToolCall, ...], str]:
    """An assistant turn's text, its ``tool_use`` calls and its thought (``thinking``
    blocks; ``redacted_thinking`` ones hold nothing this server can read)."""
    if isinstance(content, str):
        return content, (), ""
    texts, calls, thoughts = [], [], []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        if block.type == "text" and block.text is not None:
            texts.append(block.text)
        elif block.type == "thinking":
            thoughts.append(block.thinking or "")
        elif block.type == "redacted_thinking":
            continue
        elif block.type == "tool_use":
            calls.append(_call(block, at))
        else:
            raise _refuse(block, at, "text, thinking and tool_use")
    return BLOCK_SEPARATOR.join(texts), tuple(calls), "".join(thoughts)


def _call(block: ContentBlock, where: str) -> ToolCall:
    for name in ("id", "name"):
        if not getattr(block, name):
            raise InvalidRequestError(f"{where}.{name}: Field required", param=f"{where}.{name}")
    value = {} if block.input is None else block.input
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"{where}.input: a tool_use block's input must be an object", param=f"{where}.input"
        )
    return ToolCall(block.id or "", block.name or "", json.dumps(value, ensure_ascii=False))


def user_turn(
    content: str | list[ContentBlock], where: str, calls: Collection[str]
) -> tuple[list[Message], str | None]:
    """A user turn's tool results (as ``tool`` messages, answering ``calls``' ids) and its
    text (None when it has only tool results)."""
    if isinstance(content, str):
        return [], content
    results, texts = [], []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        if block.type == "text" and block.text is not None:
            texts.append(block.text)
        elif block.type == "tool_result":
            results.append(_result(block, at, calls))
        else:
            raise _refuse(block, at, "text and tool_result")
    return results, BLOCK_SEPARATOR.join(texts) if texts or not results else None


def _result(block: ContentBlock, where: str, calls: Collection[str]) -> Message:
    if not block.tool_use_id:
        raise InvalidRequestError(
            f"{where}.tool_use_id: Field required", param=f"{where}.tool_use_id"
        )
    if block.tool_use_id not in calls:
        raise InvalidRequestError(
            f"{where}: tool_result block's tool_use_id '{block.tool_use_id}' matches no "
            "tool_use block in an earlier assistant message",
            param=f"{where}.tool_use_id",
        )
    if block.content is None or isinstance(block.content, str):
        text = block.content or ""
    else:
        parts = []
        for k, part in enumerate(block.content):
            if part.type != "text" or part.text is None:
                raise InvalidRequestError(
                    f"{where}.content.{k}: tool_result content blocks of type '{part.type}' "
                    "are not supported here; send text blocks",
                    param=f"{where}.content.{k}.type",
                    code="unsupported_content",
                )
            parts.append(part.text)
        text = BLOCK_SEPARATOR.join(parts)
    if block.is_error:
        text = ERROR_PREFIX + text
    return Message("tool", text, tool_call_id=block.tool_use_id)


def in_anthropic_terms(err: InvalidRequestError) -> InvalidRequestError:
    """A core error about a tool, naming the field in Anthropic's words (``tools.0.input_schema``,
    ``tools.0.name``) before its message; other errors as they are."""
    match err.location:
        case ("tools", int(i), "parameters"):
            where = f"tools.{i}.input_schema"
        case ("tools", int(i), "name"):
            where = f"tools.{i}.name"
        case _:
            return err
    return InvalidRequestError(f"{where}: {err.message}", param=where, code=err.code)


# -- responses ---------------------------------------------------------------------------------


def tool_use_id(call_id: str) -> str:
    """A call id in Anthropic's style (``toolu_``); the id comes back as it was sent, so no
    mapping back is needed."""
    return "toolu_" + call_id.removeprefix("call_") if call_id.startswith("call_") else call_id


def tool_use_block(call: ToolCall) -> dict[str, Any]:
    """A ``tool_use`` content block of a message."""
    return {
        "type": "tool_use",
        "id": tool_use_id(call.id),
        "name": call.name,
        "input": call.arguments_object(),
    }


class StreamBlocks:
    """The content blocks of a streamed message: a text block while text comes, a
    ``tool_use`` block for each call (its input streamed as JSON fragments), one open at a
    time; ``ping`` after the first block's start, as Anthropic sends it."""

    def __init__(self) -> None:
        self.index = -1
        self._kind: str | None = None
        #: the block index of each call (by the core's call index)
        self._calls: dict[int, int] = {}

    def _open(self, block: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from self._close()
        self.index += 1
        self._kind = block["type"]
        yield {"type": "content_block_start", "index": self.index, "content_block": block}
        if self.index == 0:
            yield {"type": "ping"}

    def _close(self) -> Iterator[dict[str, Any]]:
        if self._kind is not None:
            yield {"type": "content_block_stop", "index": self.index}
            self._kind = None

    def thinking(self, text: str) -> Iterator[dict[str, Any]]:
        """Events for a piece of the thought (a ``thinking`` block, before the text)."""
        if self._kind != "thinking":
            yield from self._open({"type": "thinking", "thinking": "", "signature": ""})
        delta = {"type": "thinking_delta", "thinking": text}
        yield {"type": "content_block_delta", "index": self.index, "delta": delta}

    def text(self, text: str) -> Iterator[dict[str, Any]]:
        """Events for a piece of text."""
        if self._kind != "text":
            yield from self._open({"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": text}
        yield {"type": "content_block_delta", "index": self.index, "delta": delta}

    def call(self, piece: ToolCallDelta) -> Iterator[dict[str, Any]]:
        """Events for a piece of a tool call: its block's start with the first piece, then
        the argument fragments."""
        if piece.id is not None:
            block = {"type": "tool_use", "id": tool_use_id(piece.id), "name": piece.name or ""}
            yield from self._open({**block, "input": {}})
            self._calls[piece.index] = self.index
        if piece.arguments:
            delta = {"type": "input_json_delta", "partial_json": piece.arguments}
            index = self._calls.get(piece.index, self.index)
            yield {"type": "content_block_delta", "index": index, "delta": delta}

    def finish(self) -> Iterator[dict[str, Any]]:
        """Close the last block (an empty text block when there was no content at all)."""
        if self.index < 0:
            yield from self._open({"type": "text", "text": ""})
        yield from self._close()
