"""OpenAI wire schemas for requests, in OpenAI's names and order.

Requests accept unknown fields (clients send them) and the surface logs them. Fields that
OpenAI does not have are marked "server extra". Fields OpenAI has and this server does not honour
are declared, so that :mod:`.translate` can refuse them by name rather than drop them. Booleans
are strict and integers keep OpenAI's ranges (``"stream": "yes"`` is a 400, not ``true``).
Responses are built as plain dicts in :mod:`.translate` and serialised with orjson.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

MAX_STOP = 4
MAX_STOP_LENGTH = 256
#: OpenAI's ``seed`` is a signed 64-bit integer
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
MAX_N = 128


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    def unknown_fields(self) -> list[str]:
        """Names of fields this server does not know (accepted and ignored)."""
        return sorted(self.model_extra or {})


class ContentPart(BaseModel):
    """A content part. Only text parts are served; :mod:`.translate` refuses the others (images,
    audio, files) by name."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


#: OpenAI's rule for function names
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5


class FunctionCall(BaseModel):
    """``tool_calls[].function`` of an assistant message: ``arguments`` is JSON text."""

    name: str
    arguments: str = "{}"


class MessageToolCall(BaseModel):
    """A tool call an assistant message made."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDefinition(BaseModel):
    """``tools[].function``."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class ToolDefinition(BaseModel):
    """``tools[]``: only function tools exist in Chat Completions."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    """``tool_choice.function``."""

    name: str


class NamedToolChoice(BaseModel):
    """``tool_choice`` naming the function the model must call."""

    type: Literal["function"]
    function: NamedFunction


class ChatMessage(BaseModel):
    """One conversation turn."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    # an assistant turn's thought sent back, under either name peers use
    reasoning_content: str | None = None
    reasoning: str | None = None

    def text(self) -> str:
        """The content as one string (every part is a text part: checked in translation)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    """``stream_options``."""

    include_usage: StrictBool = False


class JsonSchemaFormat(BaseModel):
    """``response_format.json_schema``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    """``response_format``: text, any JSON object, or JSON matching a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema is required when type is 'json_schema'")
        return self


StopString = Annotated[str, Field(max_length=MAX_STOP_LENGTH)]
Stop = str | Annotated[list[StopString], Field(max_length=MAX_STOP)]


class _Sampling(_Request):
    """Fields shared by chat and text completions."""

    model: str | None = None
    frequency_penalty: StrictFloat | None = Field(None, ge=-2, le=2)
    max_tokens: StrictInt | None = Field(None, ge=1)
    n: StrictInt = Field(1, ge=1, le=MAX_N)
    presence_penalty: StrictFloat | None = Field(None, ge=-2, le=2)
    seed: StrictInt | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    stop: Stop | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    temperature: StrictFloat | None = Field(None, ge=0, le=2)
    top_p: StrictFloat | None = Field(None, gt=0, le=1)
    user: str | None = None
    # OpenAI fields this server does not honour yet: refused by name when set
    logit_bias: Any = None
    # server extras (llama.cpp and vLLM names)
    top_k: StrictInt | None = Field(None, ge=0)
    min_p: StrictFloat | None = Field(None, ge=0, le=1)
    repeat_penalty: StrictFloat | None = Field(None, gt=0)
    ignore_eos: StrictBool = False

    @field_validator("stop")
    @classmethod
    def _stop_length(cls, value: Stop | None) -> Stop | None:
        if isinstance(value, str) and len(value) > MAX_STOP_LENGTH:
            raise ValueError(f"a stop string may be at most {MAX_STOP_LENGTH} characters")
        return value

    def stop_list(self) -> tuple[str, ...]:
        """``stop`` as a tuple of non-empty strings."""
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in stops if s)

    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    # the deprecated function-calling fields: refused by name when set
    functions: Any = None
    function_call: Any = None
    # server extras (vLLM's names): template variables and documents for RAG templates
    chat_template_kwargs: dict[str, Any] | None = None
    documents: list[dict[str, Any]] | None = None
    # reasoning models: OpenAI's effort, and Ollama's ``think`` as Ollama users send it to /v1
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = (
        None
    )
    think: StrictBool | Literal["low", "medium", "high"] | None = None

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` wins over the older ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str] = Field(min_length=1)
    echo: StrictBool = False
    logprobs: StrictInt | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    suffix: Any = None
    best_of: Any = None

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str) and not value:
            raise ValueError("prompt must not be empty")
        return value

    def prompts(self) -> list[str]:
        """``prompt`` as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def token_limit(self) -> int | None:
        """``max_tokens`` (the completions API default of 16 applies when absent)."""
        return self.max_tokens if self.max_tokens is not None else 16


MAX_EMBEDDING_INPUTS = 2048


class EmbeddingRequest(_Request):
    """``POST /v1/embeddings``."""

    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, ge=1)
    user: str | None = None
    #: server extras: the model's embedding prompt by kind of input (Cohere's and Voyage's
    #: ``search_query``, ``document``...) or by name (sentence-transformers' ``prompt_name``)
    input_type: str | None = None
    prompt_name: str | None = None

    @field_validator("input")
    @classmethod
    def _valid_input(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) or not value else value
        if isinstance(value, list) and value and isinstance(value[0], int):
            items = [value]
        if not items or not value:
            raise ValueError("input must not be empty")
        if len(items) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request")
        for item in items:
            if not item:
                raise ValueError("an input must not be empty")
            if isinstance(item, list) and min(item) < 0:
                raise ValueError("token ids must not be negative")
        return value

    def inputs(self) -> list[str] | list[list[int]]:
        """``input`` as a list of texts or a list of token arrays."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]
        return cast(list[str] | list[list[int]], value)
