"""Responses API requests -> the core's chat request.

A request's ``input`` is first normalised into the item dicts this surface stores and lists
(``GET /v1/responses/{id}/input_items``): every message with an id, a role and a list of
content parts. A conversation (the items of the earlier responses of a
``previous_response_id`` chain, their output, then the new input) becomes the core's messages:
``instructions`` as the system message (never carried over from an earlier response, as
OpenAI's), assistant text and ``function_call`` items as one assistant turn with tool calls,
``function_call_output`` items as tool messages. ``reasoning`` items are accepted and not shown
to the model again (a model's earlier thoughts are not part of its prompt).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmserver.core.requests import (
    ChatRequest,
    JsonConstraint,
    Message,
    Sampling,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
)
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.responses.schemas import (
    ContentPart,
    Conversation,
    CreateResponseRequest,
    InputItem,
    ToolParam,
)

logger = logging.getLogger("llmserver.responses")

Item = dict[str, Any]

#: ``include`` values this server serves (``reasoning.encrypted_content`` has nothing to add:
#: no reasoning item here carries encrypted content)
LOGPROBS = "message.output_text.logprobs"
_INCLUDES = (LOGPROBS, "reasoning.encrypted_content")
#: ``reasoning.effort`` values OpenAI defines
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_TEXT_PARTS = ("input_text", "output_text", "text")


def item_id(prefix: str) -> str:
    """A fresh item id such as ``msg_3f...``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def _refuse(message: str, param: str, code: str = "unsupported_parameter") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def refuse_unsupported(req: Conversation) -> None:
    """400 naming a field this server does not honour; unknown fields are logged."""
    for name in ("conversation", "prompt"):
        if getattr(req, name) is not None:
            raise _refuse(f"'{name}' is not supported by this server.", name)
    if isinstance(req, CreateResponseRequest):
        if req.max_tool_calls is not None:
            raise _refuse("'max_tool_calls' is not supported by this server.", "max_tool_calls")
        for i, value in enumerate(req.include or ()):
            if value not in _INCLUDES:
                raise _refuse(
                    f"include value '{value}' is not supported by this server; it serves "
                    + ", ".join(_INCLUDES),
                    f"include[{i}]",
                )
        if req.service_tier not in (None, "auto", "default"):
            raise _refuse("'service_tier' is not supported by this server.", "service_tier")
    if req.text is not None and req.text.verbosity not in (None, "medium"):
        raise _refuse("'text.verbosity' is not supported by this server.", "text.verbosity")
    if req.reasoning is not None and req.reasoning.effort not in (None, *EFFORTS):
        raise InvalidRequestError(
            f"reasoning.effort must be one of {', '.join(EFFORTS)}", param="reasoning.effort"
        )
    if unknown := req.unknown_fields():
        logger.debug("ignoring unknown request fields: %s", ", ".join(unknown))


def reasoning_effort(req: Conversation) -> str | None:
    """The asked ``reasoning.effort`` (None: the model's default); ``none`` switches a
    reasoning model's thinking off, the levels budget it (:meth:`Thinking.of_effort`)."""
    return req.reasoning.effort if req.reasoning is not None else None


# -- input items -------------------------------------------------------------------------------


def _parts(content: str | list[ContentPart] | None, where: str, kind: str) -> list[Item]:
    """A message's content as text parts of ``kind`` (``input_text`` or ``output_text``)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_part(kind, content)]
    parts = []
    for j, part in enumerate(content):
        if part.type == "refusal":
            parts.append({"type": "refusal", "refusal": getattr(part, "refusal", "") or ""})
            continue
        if part.type not in _TEXT_PARTS or part.text is None:
            raise _refuse(
                f"content parts of type '{part.type}' are not supported by this server; send "
                "input_text parts",
                f"{where}.content[{j}].type",
                "unsupported_content",
            )
        parts.append(_text_part(kind, part.text))
    return parts


def _text_part(kind: str, text: str) -> Item:
    if kind == "output_text":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": kind, "text": text}


def _required(item: InputItem, name: str, where: str) -> str:
    value = getattr(item, name)
    if value is None:
        raise InvalidRequestError(f"{where}.{name}: Field required", param=f"{where}.{name}")
    return str(value)


def _item(item: InputItem, where: str) -> Item | None:
    """One input item as stored; None for an item the model does not read again."""
    kind = item.type or "message"
    if kind == "message":
        role = _required(item, "role", where)
        if role not in ("user", "assistant", "system", "developer"):
            raise InvalidRequestError(
                f"{where}.role: '{role}' is not one of user, assistant, system, developer",
                param=f"{where}.role",
            )
        parts = _parts(item.content, where, "output_text" if role == "assistant" else "input_text")
        return {
            "type": "message",
            "id": item.id or item_id("msg"),
            "role": role,
            "content": parts,
            "status": item.status or "completed",
        }
    if kind == "function_call":
        return {
            "type": "function_call",
            "id": item.id or item_id("fc"),
            "call_id": _required(item, "call_id", where),
            "name": _required(item, "name", where),
            "arguments": item.arguments or "",
            "status": item.status or "completed",
        }
    if kind == "function_call_output":
        output = item.output if item.output is not None else ""
        if not isinstance(output, str):
            output = "".join(p["text"] for p in _parts(output, f"{where}.output", "input_text"))
        return {
            "type": "function_call_output",
            "id": item.id or item_id("fco"),
            "call_id": _required(item, "call_id", where),
            "output": output,
            "status": item.status or "completed",
        }
    if kind == "reasoning":
        return None
    raise _refuse(
        f"input items of type '{kind}' are not supported by this server; send messages, "
        "function_call and function_call_output items",
        f"{where}.type",
        "unsupported_content",
    )


def input_items(req: Conversation) -> list[Item]:
    """The request's ``input`` as stored items (a string is one user message)."""
    if req.input is None:
        return []
    if isinstance(req.input, str):
        return [_item(InputItem(role="user", content=req.input), "input") or {}]
    items = [_item(item, f"input[{i}]") for i, item in enumerate(req.input)]
    return [item for item in items if item is not None]


def _text(item: Item) -> str:
    return "".join(p.get("text") or p.get("refusal") or "" for p in item.get("content") or ())


def messages(instructions: str | None, items: Sequence[Item]) -> tuple[Message, ...]:
    """The core's messages for a conversation of stored items."""
    out: list[Message] = [Message("system", instructions)] if instructions else []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            out.append(Message(role, _text(item)))
        elif kind == "function_call":
            call = ToolCall(item["call_id"], item["name"], item["arguments"])
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                out[-1] = Message("assistant", last.content, tool_calls=(*last.tool_calls, call))
            else:
                out.append(Message("assistant", "", tool_calls=(call,)))
        elif kind == "function_call_output":
            out.append(Message("tool", item["output"], tool_call_id=item["call_id"]))
    return tuple(out)


# -- tools, format, sampling -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tools:
    """The request's function tools as the core's, a ``namespace`` tool's flattened into them
    (the model sees each by its own name; a call of one names its namespace again)."""

    tools: tuple[Tool, ...] = ()
    choice: ToolChoice = field(default_factory=lambda: ToolChoice("none"))
    #: the namespace of each namespaced tool, by tool name
    namespaces: Mapping[str, str] = field(default_factory=dict)
    #: where each of ``tools`` is in the request (``tools[2].tools[0]``), for errors
    paths: tuple[str, ...] = ()


def _function(tool: ToolParam, where: str) -> Tool:
    if tool.type != "function":
        raise _refuse(
            f"tools of type '{tool.type}' are not supported by this server; send function tools",
            f"{where}.type",
        )
    if not tool.name:
        raise InvalidRequestError(f"{where}.name: Field required", param=f"{where}.name")
    return Tool(tool.name, tool.description, tool.parameters, tool.strict)


def _tools(req: Conversation) -> Tools:
    tools, paths, namespaces = [], [], {}
    for i, tool in enumerate(req.tools or ()):
        if tool.type != "namespace":
            tools.append(_function(tool, f"tools[{i}]"))
            paths.append(f"tools[{i}]")
            continue
        for j, inner in enumerate(tool.tools or ()):
            tools.append(_function(inner, f"tools[{i}].tools[{j}]"))
            paths.append(f"tools[{i}].tools[{j}]")
            namespaces[tools[-1].name] = tool.name or ""
    made = Tools(tuple(tools), ToolChoice("auto" if tools else "none"), namespaces, tuple(paths))
    choice = req.tool_choice
    if choice is None:
        return made
    if isinstance(choice, str):
        return dataclasses.replace(made, choice=ToolChoice(choice))
    if choice.type != "function":
        raise _refuse(
            f"tool_choice of type '{choice.type}' is not supported by this server",
            "tool_choice.type",
        )
    if not choice.name:
        raise InvalidRequestError("tool_choice.name: Field required", param="tool_choice.name")
    return dataclasses.replace(made, choice=ToolChoice("function", choice.name))


def _constraint(req: Conversation) -> JsonConstraint | None:
    fmt = req.text.format if req.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema":
        if fmt.schema_ is None:
            raise InvalidRequestError(
                "text.format.schema: Field required for type 'json_schema'",
                param="text.format.schema",
            )
        return JsonConstraint(fmt.schema_ or None)
    return JsonConstraint(None)


def logprobs(req: CreateResponseRequest) -> int | None:
    """How many alternatives per token (None: no logprobs): asked by including
    ``message.output_text.logprobs`` or by ``top_logprobs``."""
    if LOGPROBS in (req.include or ()) or req.top_logprobs:
        return req.top_logprobs or 0
    return None


@dataclass(frozen=True, slots=True)
class Translated:
    """A request as the core gets it, with the items it stores."""

    chat: ChatRequest
    #: this request's own input items (listed by ``input_items``)
    inputs: list[Item]
    #: the whole conversation up to this response's output (earlier responses' included)
    conversation: list[Item]
    tools: Tools = field(default_factory=Tools)


def chat_request(req: Conversation, earlier: Sequence[Item] = ()) -> Translated:
    """The core's chat request for ``req`` after the ``earlier`` conversation (a
    ``previous_response_id`` chain's items and output)."""
    refuse_unsupported(req)
    inputs = input_items(req)
    conversation = [*earlier, *inputs]
    tools = _tools(req)
    sampling = Sampling()
    if isinstance(req, CreateResponseRequest):
        sampling = Sampling(
            max_tokens=req.max_output_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            logprobs=logprobs(req),
        )
    chat = ChatRequest(
        req.model,
        messages(req.instructions, conversation),
        sampling,
        1,
        _constraint(req),
        tools=tools.tools,
        tool_choice=tools.choice,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        thinking=Thinking.of_effort(reasoning_effort(req)),
    )
    return Translated(chat, inputs, conversation, tools)


def in_responses_terms(err: InvalidRequestError, paths: Sequence[str] = ()) -> InvalidRequestError:
    """A core error naming a field in the Responses API's words (``tools[0].parameters``,
    ``tools[2].tools[0].parameters`` for a namespace's tool, ``text.format``, ``input``);
    other errors as they are. ``paths`` is where each of the core's tools came from."""
    match err.location:
        case ("tools", int(i), str(name)):
            where = f"{paths[i] if i < len(paths) else f'tools[{i}]'}.{name}"
        case ("constraint",):
            where = "text.format.schema"
        case ("messages", *_):
            where = "input"
        case _:
            renamed = {"response_format": "text.format", "logprobs": "include"}
            if err.param not in renamed:
                return err
            where = renamed[err.param]
    return InvalidRequestError(err.message, param=where, code=err.code)
