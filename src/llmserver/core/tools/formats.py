"""The tool-call formats models write natively.

A format names the markers that begin a call anywhere in the text (``markers``), whether a
call may also be the whole message written as bare JSON (``leading``), the text that closes
one call (``closer``) and whether a call may be ``name[ARGS]{...}``. Between the markers,
calls are JSON: an object ``{"name", "arguments"}`` (or ``"parameters"``, Llama 3.x, or
OpenAI's ``{"function": {...}}``), a list of them, or ``{"tool_call": ...}`` /
``{"tool_calls": [...]}``; :mod:`llmserver.core.tools.stream` reads them as they are written.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ToolFormat:
    """How one family of models writes tool calls."""

    name: str
    markers: tuple[str, ...]
    leading: bool
    closer: str | None
    #: a call may also be written ``name[ARGS]{...}`` after a marker (Mistral v11)
    named_args: bool = False


HERMES = ToolFormat("hermes", ("<tool_call>",), False, "</tool_call>")
LLAMA3 = ToolFormat("llama3_json", ("<|python_tag|>",), True, None)
MISTRAL = ToolFormat("mistral", ("[TOOL_CALLS]",), False, None, named_args=True)
GENERIC = ToolFormat("generic_json", (), True, None)
#: grammar-constrained output (``required`` or a named function): nothing but the calls
FORCED = ToolFormat("forced", (), True, None)
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
