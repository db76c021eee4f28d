"""OpenAI Responses API wire schemas for requests, in OpenAI's names.

Requests accept unknown fields (clients send them) and the surface logs them. Input items and
tools are kept loose here (``type`` plus the fields this server reads) so that
:mod:`.translate` can refuse what it does not serve by name (``input[2].content[0].type``)
instead of answering with a union's validation noise. Booleans and numbers are strict (a
string or a boolean is never a number) and keep OpenAI's ranges. Responses are plain dicts
built in :mod:`.stream` and :mod:`.echo`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

MAX_TOP_LOGPROBS = 20
#: OpenAI's limits on ``metadata``: 16 pairs, keys up to 64 and values up to 512 characters
MAX_METADATA = 16


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=(), populate_by_name=True)

    def unknown_fields(self) -> list[str]:
        """Names of fields this server does not know (accepted and ignored)."""
        return sorted(self.model_extra or {})


class ContentPart(_Loose):
    """A part of a message's content: ``input_text``/``output_text`` are served, the other
    kinds (images, files, audio) are refused by name in translation."""

    type: str
    text: str | None = None


class InputItem(_Loose):
    """One input item: a message (``type`` ``message`` or absent, with a ``role``), an earlier
    ``function_call`` or its ``function_call_output``, or a ``reasoning`` item."""

    type: str | None = None
    id: str | None = None
    role: str | None = None
    content: str | list[ContentPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[ContentPart] | None = None
    status: str | None = None


class ToolParam(_Loose):
    """``tools[]``: function tools (and ``namespace`` tools grouping them) are served;
    built-in and MCP tools are refused by name."""

    type: str
    name: str | None = None
    tools: list[ToolParam] | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class ToolChoiceObject(_Loose):
    """``tool_choice`` as an object: ``{"type": "function", "name": ...}`` is served."""

    type: str
    name: str | None = None


class TextFormat(_Loose):
    """``text.format``: plain text, any JSON object, or JSON matching ``schema``."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None


class TextConfig(_Loose):
    """``text``: the output's format (``verbosity`` is refused unless ``medium``)."""

    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningConfig(_Loose):
    """``reasoning``: the effort (and the summary style, which this server does not shape)."""

    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class Conversation(_Loose):
    """What a created response and a token count share."""

    model: str | None = None
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    tools: list[ToolParam] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceObject | None = None
    parallel_tool_calls: StrictBool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    # OpenAI fields this server does not serve: refused by name when set
    conversation: Any = None
    prompt: Any = None


class CreateResponseRequest(Conversation):
    """``POST /v1/responses``."""

    stream: StrictBool | None = False
    store: StrictBool | None = True
    background: StrictBool | None = False
    max_output_tokens: StrictInt | None = Field(None, ge=1)
    temperature: StrictFloat | None = Field(None, ge=0, le=2)
    top_p: StrictFloat | None = Field(None, gt=0, le=1)
    top_logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    include: list[str] | None = None
    metadata: dict[str, str] | None = Field(None, max_length=MAX_METADATA)
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    # OpenAI fields this server does not serve: refused by name when set
    max_tool_calls: Any = None


class InputTokensRequest(Conversation):
    """``POST /v1/responses/input_tokens``."""
