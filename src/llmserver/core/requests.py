"""The core's own request types: what a surface asks for, in no wire protocol's words.

A surface validates its wire request and translates it into one of these; the service takes it
from there. Every field is already valid (types, ranges), so the core checks only what needs
the model: its context length, its abilities, the caller's permissions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llmserver.backends.base import JsonConstraint as JsonConstraint  # for the surfaces
from llmserver.core.fim import CodeLimits

logger = logging.getLogger("llmserver.core.requests")


@dataclass(frozen=True, slots=True)
class Sampling:
    """How to sample; None leaves a value to the model's configured defaults.

    ``max_tokens`` None means the model's default, or else the rest of the context.
    ``context_limit`` caps the context this request may use (prompt plus completion) below the
    model's own, without reloading anything (Ollama's ``num_ctx``); None: the model's.
    ``fit_context`` makes ``max_tokens`` an upper bound that the room left in the context cuts
    short, instead of a length that must fit; the service sets it from the server's
    ``max_tokens_overflow``, one rule for every surface.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    #: each token's log probability and this many alternatives; None: no logprobs
    logprobs: int | None = None
    #: special tokens (tool-call markup) come out as their text instead of nothing
    special_text: bool = False
    context_limit: int | None = None
    fit_context: bool = False


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the assistant made: ``arguments`` is the JSON text of the arguments object."""

    id: str
    name: str
    arguments: str

    def arguments_object(self) -> dict[str, Any]:
        """The arguments as the JSON object Ollama and Anthropic send (empty text: ``{}``).
        Arguments that are not one (a reply cut short inside the call by ``max_tokens``, whose
        finish reason says so, or an upstream's malformed call) are sent as ``{}``, with a
        warning in the log."""
        value: Any = {}
        if self.arguments.strip():
            try:
                value = json.loads(self.arguments)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, dict):
            logger.warning("call to '%s': arguments are not a JSON object; sent as {}", self.name)
            return {}
        return value


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; ``parameters`` is its arguments' JSON schema."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None


ToolMode = Literal["none", "auto", "required", "function"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether the model may, must or must not call tools; ``function`` names the one it must."""

    mode: ToolMode = "auto"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn as plain text (``developer`` is already ``system``).

    An assistant turn may carry ``tool_calls`` and the ``reasoning`` (thought) it was sent
    back with; a ``tool`` turn answers the call ``tool_call_id``.
    """

    role: str
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class Thinking:
    """Whether a reasoning model thinks for this request, and how long.

    ``enabled`` None: the model's default. ``budget``: thought tokens before the thought is
    ended; ``effort`` (``low``, ``medium``, ``high``) stands for the server's budget of that
    name when ``budget`` is None; neither: the model's configured budget. ``strict``: asking a
    model that cannot think to think is a 400 (Ollama's answer); otherwise it is ignored with
    a log line (OpenAI's).
    """

    enabled: bool | None = None
    budget: int | None = None
    effort: Literal["low", "medium", "high"] | None = None
    strict: bool = False

    @classmethod
    def of_effort(cls, effort: str | None) -> Thinking:
        """OpenAI's ``reasoning_effort`` (``reasoning.effort`` in the Responses API): ``none``
        switches thinking off, ``minimal`` is ``low``, ``xhigh`` is ``high``, ``max`` has no
        budget; None: the model's default."""
        if effort is None:
            return cls()
        if effort == "none":
            return cls(enabled=False)
        if effort == "max":
            return cls(enabled=True)
        level = {"minimal": "low", "xhigh": "high"}.get(effort, effort)
        if level not in ("low", "medium", "high"):
            raise ValueError(f"unknown reasoning effort: {effort!r}")
        return cls(enabled=True, effort=level)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A reply to a conversation, rendered with the model's chat template.

    ``mask_input`` asks for the messages to be masked even when neither the model nor the key
    wants it (a surface may ask for more privacy, never for less). ``tools`` are rendered by
    the model's template; ``tool_choice`` decides whether a call is parsed (``auto``) or
    forced by a grammar (``required``, ``function``). ``template_kwargs`` are extra template
    variables. ``use_prompt_format`` renders
    with the configured ``chat_prompt_format`` (the model's, else the server's) instead of always
    the chat template: a format string then takes the last message's content as ``{prompt}``
    and its result is the whole prompt (the simple ``/chat``).
    """

    model: str | None
    messages: tuple[Message, ...]
    sampling: Sampling = field(default_factory=Sampling)
    n: int = 1
    constraint: JsonConstraint | None = None
    mask_input: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    documents: tuple[Mapping[str, Any], ...] = ()
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    use_prompt_format: bool = False
    thinking: Thinking = field(default_factory=Thinking)


@dataclass(frozen=True, slots=True)
class TextRequest:
    """A plain continuation of each prompt (no chat template), ``n`` choices per prompt;
    ``constraint`` holds the output to JSON as for a chat."""

    model: str | None
    prompts: tuple[str, ...]
    sampling: Sampling = field(default_factory=Sampling)
    n: int = 1
    mask_input: bool = False
    constraint: JsonConstraint | None = None


EmbedInputs = Sequence[str] | Sequence[Sequence[int]]


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """Vectors for texts (or token id lists); ``dimensions`` truncates a Matryoshka model's."""

    model: str | None
    inputs: EmbedInputs
    dimensions: int | None = None
    mask_input: bool = False
    #: Cohere's and Voyage's kind of input (``search_query``, ``document``...): the model's
    #: prompt for it (:mod:`llmserver.core.embed_prompts`)
    input_type: str | None = None
    #: one of the model's prompts by name (sentence-transformers' ``prompt_name``)
    prompt_name: str | None = None


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """Relevance scores of (query, document) pairs: a rerank (one query, many documents) or
    vLLM's pairwise score. ``truncate`` cuts a document that does not fit the model instead of
    refusing it."""

    model: str | None
    pairs: tuple[tuple[str, str], ...]
    truncate: bool = False
    mask_input: bool = False


@dataclass(frozen=True, slots=True)
class InfillRequest:
    """Code for the hole between ``prefix`` and ``suffix`` (fill-in-the-middle), ``n`` choices;
    ``typed`` is text already written in the hole, ``extra`` other files as (name, text)."""

    model: str | None
    prefix: str
    suffix: str
    sampling: Sampling = field(default_factory=Sampling)
    n: int = 1
    typed: str = ""
    extra: tuple[tuple[str, str], ...] = ()
    mask_input: bool = False
    limits: CodeLimits | None = None


@dataclass(frozen=True, slots=True)
class TokenizeRequest:
    """The tokens of a text, or of a chat rendered with the model's chat template.

    ``add_special`` None: as the model generates from it (its BOS where it wants one and the
    text lacks it); False: no special tokens are added.
    """

    model: str | None
    prompt: str | None = None
    chat: ChatRequest | None = None
    add_special: bool | None = None
    mask_input: bool = False


@dataclass(frozen=True, slots=True)
class DetokenizeRequest:
    """The text of token ids."""

    model: str | None
    tokens: tuple[int, ...]
