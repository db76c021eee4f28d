"""A chat request's tools as the model sees them: checks, prompt data, grammar and parser.

The checks (a 400 with a ``location``) run before any work; :class:`ToolPlan` then says what
the template gets, which grammar constrains a ``required`` or named call, and which parser
reads the reply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for

from llmserver.backends.base import JsonConstraint
from llmserver.core.requests import ChatRequest, Message, Tool, ToolChoice
from llmserver.core.tools.formats import GENERIC, HERMES, LLAMA3, MISTRAL, ToolFormat, detect
from llmserver.core.tools.stream import ForcedCalls, ToolStream
from llmserver.errors import InvalidRequestError

if TYPE_CHECKING:
    from llmserver.core.templating import ChatTemplate

#: the most calls one ``required`` reply may hold when parallel calls are allowed
MAX_FORCED_CALLS = 8
#: a lazy-grammar trigger: the reply begins (after whitespace) with a JSON object
LEADING_JSON = r"^\s*(\{[\s\S]*)$"

GENERIC_INSTRUCTIONS = (
    "You may call these tools. To call one, reply with only this JSON and nothing else: "
    '{{"tool_call": {{"name": <tool name>, "arguments": <arguments object>}}}}\n'
    "Tools:\n{tools}"
)


def check(req: ChatRequest, max_tools: int, max_schema_bytes: int) -> None:
    """400 for tools, a tool choice or tool messages that cannot be served."""
    if len(req.tools) > max_tools:
        raise InvalidRequestError(
            f"at most {max_tools} tools may be given", param="tools", code="too_many_tools"
        )
    seen: set[str] = set()
    for i, tool in enumerate(req.tools):
        _check_tool(i, tool, max_schema_bytes)
        if tool.name in seen:
            raise InvalidRequestError(
                f"tool '{tool.name}' is given twice", location=("tools", i, "name")
            )
        seen.add(tool.name)
    choice = req.tool_choice
    if choice.mode in ("required", "function") and not req.tools:
        raise InvalidRequestError(f"tool_choice '{choice.mode}' needs tools", param="tool_choice")
    if choice.mode == "function" and choice.name not in seen:
        raise InvalidRequestError(
            f"tool_choice names '{choice.name}', which is not among the tools",
            param="tool_choice",
        )
    if req.constraint is not None and choice.mode in ("required", "function"):
        raise InvalidRequestError(
            "response_format cannot be combined with a required tool call",
            param="response_format",
        )
    _check_messages(req.messages)


def _check_tool(i: int, tool: Tool, max_schema_bytes: int) -> None:
    where = ("tools", i, "parameters")
    if tool.parameters is None:
        return
    size = len(json.dumps(tool.parameters).encode("utf-8"))
    if size > max_schema_bytes:
        raise InvalidRequestError(
            f"tool '{tool.name}' has a {size}-byte schema; the limit is {max_schema_bytes}",
            location=where,
            code="schema_too_large",
        )
    schema = dict(tool.parameters)
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequestError(
            f"tool '{tool.name}' parameters are not a valid JSON schema: {exc.message}",
            location=where,
            code="invalid_schema",
        ) from None
    if schema.get("type", "object") != "object":
        raise InvalidRequestError(
            f"tool '{tool.name}' parameters must describe an object", location=where
        )


def _check_messages(messages: Sequence[Message]) -> None:
    calls: set[str] = set()
    for i, message in enumerate(messages):
        calls.update(call.id for call in message.tool_calls)
        if message.role != "tool":
            continue
        if message.tool_call_id is None:
            raise InvalidRequestError(
                "a tool message needs tool_call_id", location=("messages", i, "tool_call_id")
            )
        if message.tool_call_id not in calls:
            raise InvalidRequestError(
                f"tool_call_id '{message.tool_call_id}' matches no earlier tool call",
                location=("messages", i, "tool_call_id"),
            )


def wire_tool(tool: Tool) -> dict[str, Any]:
    """A tool in OpenAI's shape, the shape Hugging Face chat templates read."""
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = dict(tool.parameters or {"type": "object", "properties": {}})
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def wire_tool_choice(req: ChatRequest) -> str | dict[str, Any] | None:
    """``tool_choice`` in OpenAI's shape (None when no tools are given)."""
    if not req.tools:
        return None
    if req.tool_choice.mode == "function":
        return {"type": "function", "function": {"name": req.tool_choice.name}}
    return req.tool_choice.mode


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def wire_message(message: Message, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A message in OpenAI's shape, as an OpenAI-speaking engine takes it.

    With ``names`` (the tool name of each call id) it is shaped for a chat template instead:
    arguments as objects (templates apply ``tojson`` to them), and a tool message carries the
    name of the tool it answers.
    """
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if names is None and message.tool_calls and not message.content:
        out["content"] = None  # as the client sent it
    if message.name is not None:
        out["name"] = message.name
    if message.reasoning:
        # the name Qwen3's and DeepSeek's templates read (most drop it from earlier turns)
        out["reasoning_content"] = message.reasoning
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.arguments if names is None else _arguments(call.arguments),
                },
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
        if names is not None and message.tool_call_id in names:
            out.setdefault("name", names[message.tool_call_id])
    return out


def wire_messages(messages: Sequence[Message], template: bool = False) -> list[dict[str, Any]]:
    """Every message in OpenAI's shape (for a chat template when ``template``)."""
    if not template:
        return [wire_message(m) for m in messages]
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    return [wire_message(m, names) for m in messages]


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """How one chat request's tools reach a local model and come back.

    It is the request's alone; the steps that depend on the model (does its chat template
    render tools itself, in which format does it write calls) are given the template.
    """

    tools: tuple[Tool, ...] = ()
    choice: ToolChoice = field(default_factory=ToolChoice)
    parallel: bool = True

    @classmethod
    def of(cls, req: ChatRequest) -> ToolPlan:
        """The plan for ``req``'s tools."""
        return cls(req.tools, req.tool_choice, req.parallel_tool_calls)

    @property
    def active(self) -> bool:
        """Whether the reply may hold calls."""
        return bool(self.tools) and self.choice.mode != "none"

    def template_tools(self, template: ChatTemplate) -> list[dict[str, Any]] | None:
        """The tools for the template (None when it does not render them)."""
        if not self.tools or not template.takes_tools:
            return None
        return [wire_tool(t) for t in self.tools]

    def messages(self, messages: Sequence[Message], template: ChatTemplate) -> list[dict[str, Any]]:
        """The template's messages; without native tool support, tools and calls as text."""
        out = wire_messages(messages, template=True)
        if template.takes_tools or not self.tools:
            return out
        for message in out:
            if calls := message.pop("tool_calls", None):
                text = [{"tool_call": c["function"]} for c in calls]
                body = json.dumps(text[0] if len(text) == 1 else text, ensure_ascii=False)
                message["content"] = (message["content"] + "\n" + body).strip()
        if not self.active:
            return out
        tools = "\n".join(json.dumps(wire_tool(t), ensure_ascii=False) for t in self.tools)
        note = GENERIC_INSTRUCTIONS.format(tools=tools)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{note}"}
        else:
            out.insert(0, {"role": "system", "content": note})
        return out

    def constraint(self, template: ChatTemplate) -> JsonConstraint | None:
        """The grammar for a ``required`` or named call (None for ``auto`` and ``none``)."""
        choice, tools = self.choice, self.tools
        if not self.active:
            return None
        if choice.mode == "auto":
            return self._lazy(template)
        if choice.mode == "function":
            tool = next(t for t in tools if t.name == choice.name)
            where = ("tools", tools.index(tool), "parameters")
            return JsonConstraint(_params(tool), location=where)
        one = _one_call(tools, "arguments")
        if not self.parallel:
            return JsonConstraint(one, location=("tools",))
        schema = {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_FORCED_CALLS}
        return JsonConstraint(schema, location=("tools",))

    def _lazy(self, template: ChatTemplate) -> JsonConstraint | None:
        """A grammar that engages once the model starts a call in its own format."""
        fmt, tools, parallel = _format(template), self.tools, self.parallel
        where = ("tools",)
        if fmt is HERMES:
            one = _one_call(tools, "arguments")
            return JsonConstraint(
                one,
                location=where,
                triggers=("<tool_call>",),
                before="<tool_call>",
                after="</tool_call>",
                repeat=parallel,
            )
        if fmt is LLAMA3:
            return JsonConstraint(
                _one_call(tools, "parameters"), location=where, triggers=(LEADING_JSON,)
            )
        if fmt is MISTRAL and "[ARGS]" not in template.source:
            calls = {"type": "array", "items": _one_call(tools, "arguments"), "minItems": 1}
            if not parallel:
                calls["maxItems"] = 1
            return JsonConstraint(
                calls, location=where, triggers=(r"\[TOOL_CALLS\]",), before="[TOOL_CALLS]"
            )
        if fmt is MISTRAL:  # v11: [TOOL_CALLS]name[ARGS]{...}, each call after its own marker
            return JsonConstraint(
                None,
                location=where,
                triggers=(r"\[TOOL_CALLS\]",),
                before="[TOOL_CALLS]",
                repeat=parallel,
                alternatives=tuple((f"{t.name}[ARGS]", _params(t)) for t in tools),
            )
        if fmt is GENERIC:
            schema = {
                "type": "object",
                "properties": {"tool_call": _one_call(tools, "arguments")},
                "required": ["tool_call"],
                "additionalProperties": False,
            }
            return JsonConstraint(schema, location=where, triggers=(LEADING_JSON,))
        return None

    def parser(self, template: ChatTemplate) -> ToolStream | ForcedCalls | None:
        """A fresh parser for one choice (None: the reply is plain content)."""
        if not self.active:
            return None
        names = [t.name for t in self.tools]
        if self.choice.mode == "auto":
            return ToolStream(_format(template), names, self.parallel)
        forced = self.choice.name if self.choice.mode == "function" else None
        return ForcedCalls(names, self.parallel, forced)


def _format(template: ChatTemplate) -> ToolFormat:
    """The format the template's model writes calls in (generic JSON when it renders no
    tools itself: the server then describes them in a system message)."""
    return detect(template.source) if template.takes_tools else GENERIC


def _one_call(tools: Sequence[Tool], arguments: str) -> dict[str, Any]:
    """The schema of one call to any of ``tools``, arguments under the key ``arguments``."""
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, arguments: _params(t)},
                "required": ["name", arguments],
                "additionalProperties": False,
            }
            for t in tools
        ]
    }


def _params(tool: Tool) -> dict[str, Any]:
    return dict(tool.parameters or {"type": "object", "properties": {}})
