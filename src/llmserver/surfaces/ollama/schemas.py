"""Ollama's request bodies, in its field names (``api/types.go``).

Like Ollama, the models accept fields they do not know (logged by :mod:`.translate`).
``options`` stays a plain mapping: :mod:`.translate` reads it the way Ollama's ``FromMap`` does
(integers sent as floats accepted, unknown options logged and ignored).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

#: ``format``: "" or "json", or a JSON schema object
Format = str | dict[str, Any] | None
#: ``keep_alive``: seconds as a number, or a duration string such as "5m" or "-1"
KeepAliveValue = float | int | str | None
#: ``think``: a boolean or a level ("low", "medium", "high", "max")
Think = bool | str | None


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    def unknown_fields(self) -> list[str]:
        """Names of fields this server does not know (accepted and ignored)."""
        return sorted(self.model_extra or {})


class _Generating(_Request):
    model: str
    stream: StrictBool | None = None
    format: Format = None
    keep_alive: KeepAliveValue = None
    options: dict[str, Any] | None = None
    think: Think = None
    truncate: StrictBool | None = None
    shift: StrictBool | None = None
    logprobs: StrictBool = False
    top_logprobs: int = 0

    def streams(self) -> bool:
        """Ollama streams unless told ``"stream": false``."""
        return self.stream is not False


class GenerateRequest(_Generating):
    """``POST /api/generate``."""

    prompt: str = ""
    suffix: str = ""
    system: str = ""
    template: str = ""
    context: list[int] | None = None
    raw: StrictBool = False
    images: list[Any] | None = None


class ToolFunction(BaseModel):
    """``tools[].function``: a function the model may call."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(BaseModel):
    """``tools[]``: only ``function`` tools exist (:mod:`.translate` refuses other types)."""

    model_config = ConfigDict(extra="allow")

    type: str = "function"
    function: ToolFunction


class CallFunction(BaseModel):
    """``tool_calls[].function``: the arguments are a JSON object, not JSON text."""

    model_config = ConfigDict(extra="allow")

    name: str
    arguments: dict[str, Any] = {}
    index: int | None = None


class ToolCall(BaseModel):
    """A call an assistant message made (``id`` is optional, as Ollama's own)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    function: CallFunction


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str = ""
    thinking: str | None = None
    images: list[Any] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    @field_validator("role")
    @classmethod
    def _lower(cls, role: str) -> str:
        return role.lower()  # as Ollama's Message.UnmarshalJSON


class ChatRequest(_Generating):
    """``POST /api/chat``."""

    messages: list[Message] = []
    tools: list[Tool] | None = None


class EmbedRequest(_Request):
    """``POST /api/embed``."""

    model: str
    input: str | list[str] = []
    truncate: StrictBool | None = None
    dimensions: int | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAliveValue = None


class EmbeddingsRequest(_Request):
    """``POST /api/embeddings`` (the legacy single-prompt form)."""

    model: str
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: KeepAliveValue = None


class ShowRequest(_Request):
    """``POST /api/show`` (``name`` is the older spelling of ``model``)."""

    model: str = ""
    name: str = ""
    verbose: StrictBool = False
    system: str = ""
    template: str = ""


class PullRequest(_Request):
    """``POST /api/pull``."""

    model: str = ""
    name: str = ""
    stream: StrictBool | None = None
    insecure: StrictBool | None = None


class PresetTurn(BaseModel):
    """One of ``/api/create``'s ``messages``."""

    model_config = ConfigDict(extra="forbid")

    role: str
    content: str


class CreateRequest(_Request):
    """``POST /api/create``: the JSON form (``from``, ``system``...) or a ``modelfile``."""

    model: str = ""
    name: str = ""
    from_: str | None = Field(None, alias="from")
    modelfile: str | None = None
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[PresetTurn] | None = None
    adapters: dict[str, str] | None = None
    files: dict[str, str] | None = None
    license: str | list[str] | None = None
    quantize: str | None = None
    stream: StrictBool | None = None


class CopyRequest(_Request):
    """``POST /api/copy``."""

    source: str = ""
    destination: str = ""


class DeleteRequest(_Request):
    """``DELETE /api/delete`` (``name`` is the older spelling of ``model``)."""

    model: str = ""
    name: str = ""


Body = TypeVar("Body", bound=BaseModel)


def body(model: type[Body]) -> Callable[[Request], Awaitable[Body]]:
    """A dependency that reads the body as JSON whatever its ``Content-Type``: Ollama's own
    examples (``curl ... -d '{...}'``) send none, or ``application/x-www-form-urlencoded``."""

    async def parse(request: Request) -> Body:
        raw = await request.body()
        try:
            return model.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors, body=raw) from None

    return parse
