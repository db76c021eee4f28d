"""Anthropic Messages API wire schemas for requests, in Anthropic's names.

Requests accept unknown fields (Anthropic adds fields often, and clients send them) and the
surface logs them. Fields Anthropic has and this server does not serve (MCP servers) are
declared, so that :mod:`.translate` can refuse them by name rather than drop them. Booleans
are strict and numbers keep Anthropic's ranges. Responses are built as plain dicts in
:mod:`.translate`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

MAX_STOP_SEQUENCES = 16
MAX_STOP_LENGTH = 256


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    def unknown_fields(self) -> list[str]:
        """Names of fields this server does not know (accepted and ignored)."""
        return sorted(self.model_extra or {})


class TextBlock(BaseModel):
    """A text block of ``system`` (``cache_control`` and ``citations`` are accepted, unused)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class ResultBlock(BaseModel):
    """A block of a ``tool_result``'s content (only text is served)."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ContentBlock(BaseModel):
    """A content block of a message: text, ``tool_use`` (assistant) and ``tool_result`` (user)
    are served; :mod:`.translate` refuses the others (images, documents, thinking) by type."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    #: ``tool_use``: the call's id, the tool's name and the arguments object
    id: str | None = None
    name: str | None = None
    input: Any = None
    #: ``tool_result``: the call answered, its content and whether the tool failed
    tool_use_id: str | None = None
    content: str | list[ResultBlock] | None = None
    is_error: StrictBool | None = None
    #: ``thinking``: an assistant turn's thought sent back
    thinking: str | None = None


class InputMessage(BaseModel):
    """One turn: ``user`` or ``assistant`` (other roles are read as ``user``, with a warning)."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[ContentBlock]


class JsonSchemaFormat(BaseModel):
    """``output_config.format``: structured output matching a JSON schema."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    """``output_config`` (``effort`` is accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    format: JsonSchemaFormat | None = None


class ToolDefinition(BaseModel):
    """``tools[]``: a client tool (``type`` absent or ``custom``); server tools are refused by
    :mod:`.translate`. ``cache_control`` is accepted and unused."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class ToolChoice(BaseModel):
    """``tool_choice``: may, must (``any``), must call ``name`` (``tool``), or must not."""

    model_config = ConfigDict(extra="allow")

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: StrictBool | None = None


class ThinkingConfig(BaseModel):
    """``thinking``: extended thinking on (``enabled``, with a budget; ``adaptive``: the
    model's own budget) or ``disabled``."""

    model_config = ConfigDict(extra="allow")

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: StrictInt | None = Field(None, ge=0)


class _Conversation(_Request):
    """What a message and a token count share: the model, the system prompt and the turns."""

    model: str = Field(min_length=1)
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    # refused by name when set
    mcp_servers: Any = None
    thinking: ThinkingConfig | None = None


StopSequence = Annotated[str, Field(max_length=MAX_STOP_LENGTH)]


class MessagesRequest(_Conversation):
    """``POST /v1/messages``."""

    max_tokens: StrictInt = Field(ge=1)
    temperature: StrictFloat | None = Field(None, ge=0, le=1)
    top_p: StrictFloat | None = Field(None, gt=0, le=1)
    top_k: StrictInt | None = Field(None, ge=0)
    stop_sequences: list[StopSequence] | None = Field(None, max_length=MAX_STOP_SEQUENCES)
    stream: StrictBool = False
    #: ``user_id`` and the like: accepted and ignored
    metadata: dict[str, Any] | None = None
    output_config: OutputConfig | None = None
    #: a server extra, as on /v1: generate past the end-of-text token (tests, benchmarks)
    ignore_eos: StrictBool = False


class CountTokensRequest(_Conversation):
    """``POST /v1/messages/count_tokens``."""
