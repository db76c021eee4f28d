"""The tool-call formats models write natively, and how to read a finished call out of each.

A format names the markers that begin a call anywhere in the text (``markers``), whether a
call may also be the whole message written as bare JSON (``leading``), the text that closes
one call (``closer``), and a parser for the call text. Parsers raise :class:`MalformedCall`
for text that is not a valid call; the caller then keeps it as content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: a parsed call: the tool's name and its arguments object
Call = tuple[str, dict[str, Any]]


class MalformedCall(ValueError):
    """Text that began like a tool call is not one (bad JSON, unknown tool, wrong shape)."""


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise MalformedCall(f"arguments are not JSON: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedCall("arguments are not a JSON object")
    return value


def call_of(obj: Any) -> Call:
    """One call from a JSON object in any of the common shapes.

    ``{"name", "arguments"}``, ``{"name", "parameters"}`` (Llama 3.x) and
    ``{"function": {"name", "arguments"}}`` (OpenAI's own).
    """
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise MalformedCall("a call must be an object with a string 'name'")
    args = obj.get("arguments", obj.get("parameters"))
    return obj["name"], _arguments(args)


def _json_values(text: str) -> list[Any]:
    """Every JSON value in ``text``, in order, separated by whitespace, ``;`` or ``,``."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n;,":
            pos += 1
        if pos == len(text):
            return values
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise MalformedCall(f"not JSON: {exc.msg} at {exc.pos}") from None
        values.append(value)


def _calls_in(values: list[Any]) -> list[Call]:
    calls: list[Call] = []
    for value in values:
        calls += [call_of(v) for v in value] if isinstance(value, list) else [call_of(value)]
    if not calls:
        raise MalformedCall("no call in the text")
    return calls


def parse_hermes(text: str) -> list[Call]:
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen 2.5 / 3)."""
    body = text.removeprefix("<tool_call>").removesuffix("</tool_call>")
    return _calls_in(_json_values(body))


def parse_llama3(text: str) -> list[Call]:
    """``{"name": ..., "parameters": {...}}``, after an optional ``<|python_tag|>``."""
    return _calls_in(_json_values(text.replace("<|python_tag|>", " ")))


_MISTRAL_ARGS = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[CALL_ID\]\s*[A-Za-z0-9]+\s*)?\[ARGS\]")


def parse_mistral(text: str) -> list[Call]:
    """``[TOOL_CALLS][{"name": ..., "arguments": {...}}]`` or ``[TOOL_CALLS]name[ARGS]{...}``."""
    calls: list[Call] = []
    for part in text.split("[TOOL_CALLS]"):
        if not part.strip():
            continue
        named = _MISTRAL_ARGS.match(part)
        if named is None:
            calls += _calls_in(_json_values(part))
            continue
        values = _json_values(part[named.end() :])
        if len(values) != 1:
            raise MalformedCall("[ARGS] must be followed by one JSON object")
        calls.append((named.group(1), _arguments(values[0])))
    if not calls:
        raise MalformedCall("no call after [TOOL_CALLS]")
    return calls


def parse_generic(text: str) -> list[Call]:
    """``{"tool_calls": [...]}``, ``{"tool_call": {...}}`` or a bare call object or list."""
    values = _json_values(text)
    if len(values) == 1 and isinstance(values[0], dict):
        obj = values[0]
        if isinstance(obj.get("tool_calls"), list):
            return _calls_in(obj["tool_calls"])
        if isinstance(obj.get("tool_call"), dict):
            return [call_of(obj["tool_call"])]
    return _calls_in(values)


@dataclass(frozen=True, slots=True)
class ToolFormat:
    """How one family of models writes tool calls."""

    name: str
    markers: tuple[str, ...]
    leading: bool
    closer: str | None
    parse: Callable[[str], list[Call]]


HERMES = ToolFormat("hermes", ("<tool_call>",), False, "</tool_call>", parse_hermes)
LLAMA3 = ToolFormat("llama3_json", ("<|python_tag|>",), True, None, parse_llama3)
MISTRAL = ToolFormat("mistral", ("[TOOL_CALLS]",), False, None, parse_mistral)
GENERIC = ToolFormat("generic_json", (), True, None, parse_generic)
FORMATS = (HERMES, LLAMA3, MISTRAL, GENERIC)


def detect(template_source: str) -> ToolFormat:
    """The format a chat template teaches its model (generic JSON when it teaches none)."""
    if "<tool_call>" in template_source:
        return HERMES
    if "[TOOL_CALLS]" in template_source:
        return MISTRAL
    if "<|python_tag|>" in template_source or (
        "<|start_header_id|>" in template_source and "parameters" in template_source
    ):
        return LLAMA3
    return GENERIC
