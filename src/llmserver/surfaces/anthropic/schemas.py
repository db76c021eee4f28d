"""Anthropic Messages API wire schemas for requests, in Anthropic's names.

Requests accept unknown fields (Anthropic adds fields often, and clients send them) and the
surface logs them. Fields Anthropic has and this server does not serve yet (tools) are declared,
so that :mod:`.translate` can refuse them by name rather than drop them. Booleans are strict and
numbers keep Anthropic's ranges. Responses are built as plain dicts in :mod:`.translate`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

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


class ContentBlock(BaseModel):
    """A content block of a message. Only text blocks are served; :mod:`.translate` refuses the
    others (images, documents, tool use and results, thinking) by their type."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


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


class _Conversation(_Request):
    """What a message and a token count share: the model, the system prompt and the turns."""

    model: str = Field(min_length=1)
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    # refused by name when set (tool calling is not served yet)
    tools: Any = None
    tool_choice: Any = None
    mcp_servers: Any = None
    # accepted and ignored: extended thinking needs a model that thinks in Anthropic's format
    thinking: Any = None


StopSequence = Annotated[str, Field(max_length=MAX_STOP_LENGTH)]


class MessagesRequest(_Conversation):
    """``POST /v1/messages``."""

    max_tokens: StrictInt = Field(ge=1)
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: StrictInt | None = Field(None, ge=0)
    stop_sequences: list[StopSequence] | None = Field(None, max_length=MAX_STOP_SEQUENCES)
    stream: StrictBool = False
    #: ``user_id`` and the like: accepted and ignored
    metadata: dict[str, Any] | None = None
    output_config: OutputConfig | None = None


class CountTokensRequest(_Conversation):
    """``POST /v1/messages/count_tokens``."""
