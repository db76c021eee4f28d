"""The Backend protocol and the internal request and delta types that cross it.

A backend receives an already-validated :class:`GenerationRequest` and streams :class:`Delta`
objects. It never sees HTTP and never builds a response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from llmserver.backends.thought import ThoughtSpec
from llmserver.config.model_configs import ModelConfig
from llmserver.errors import (
    ContextLengthError,
    EngineError,
    InvalidRequestError,
    Location,
    OutOfMemoryError,
    ServiceUnavailableError,
)

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Resolved sampling parameters: request values over model defaults.

    ``max_tokens`` is always positive for local engines; for a backend without a tokenizer
    (upstream) 0 means "not limited here": the engine behind it decides.
    """

    max_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    #: report each token's log probability and this many alternatives (None: no logprobs)
    logprobs: int | None = None
    #: render special tokens as their text (native tool-call markup), not as nothing
    special_text: bool = False


@dataclass(frozen=True, slots=True)
class JsonConstraint:
    """Constrain output to JSON: any object when ``schema`` is None, else that JSON schema.

    ``location`` is where in the request a schema the engine cannot use came from (the 400):
    the request's output constraint, or one of its tools.
    """

    schema: dict[str, Any] | None = None
    location: Location = ("constraint",)
    #: a lazy constraint (tool calls in ``auto`` mode): the output is free until one of these
    #: regular expressions matches it; from the match on it is ``before``, JSON matching
    #: ``schema`` and ``after``, again and again when ``repeat``. Engines without lazy grammars
    #: ignore it (it only helps a call parse).
    triggers: tuple[str, ...] = ()
    before: str = ""
    after: str = ""
    repeat: bool = False
    #: instead of ``schema``: after ``before``, one of these literals followed by JSON matching
    #: its schema (Mistral v11's ``name[ARGS]{...}``: the name is text, not JSON)
    alternatives: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation: the tokenized prompt and how to sample.

    A backend without a tokenizer (upstream) gets the text instead: ``messages`` for a chat
    (``prompt`` is then empty) or ``prompt`` for a completion, and no ``prompt_tokens``; with
    ``tools`` and ``tool_choice`` in OpenAI's form (an OpenAI-speaking engine passes them on).
    """

    request_id: str
    prompt: str
    prompt_tokens: Sequence[int]
    params: SamplingParams
    constraint: JsonConstraint | None = None
    messages: Sequence[Mapping[str, Any]] | None = None
    tools: Sequence[Mapping[str, Any]] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    #: the code after the hole, for an engine that fills the middle itself (``prompt`` is the
    #: code before it); None: a plain completion
    suffix: str | None = None
    #: how the output holds a reasoning model's thought (None: it holds none); an engine that
    #: can budgets it and applies ``constraint`` only after it
    thought: ThoughtSpec | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of one tool call: ``id`` and ``name`` come in its first piece, then arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One candidate token and its log probability."""

    token: str
    bytes: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token's log probability and the ``top`` most likely tokens at its step."""

    token: str
    bytes: bytes
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(slots=True)
class Delta:
    """A piece of generated text. ``tokens`` is how many generated tokens it accounts for.

    A backend that does not count locally (upstream) sends ``tokens=0`` on text and puts the
    engine's reported counts on the last delta: ``tokens`` and ``prompt_tokens``. A last delta
    that ends on one of the request's stop strings names it in ``stop_sequence`` (None for the
    end of text, a limit, or an engine that does not say which).
    ``cached_tokens`` (on the last delta) is how many of the prompt's tokens the engine took
    from its prefix cache instead of evaluating them; None when the engine does not say.
    """

    text: str
    tokens: int = 1
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    #: tool calls the engine itself reports (upstream) or the core parsed out of the text
    tool_calls: tuple[ToolCallDelta, ...] = ()
    #: the log probabilities of the tokens this delta accounts for (when asked for)
    logprobs: tuple[TokenLogprob, ...] = ()
    stop_sequence: str | None = None
    cached_tokens: int | None = None
    #: a reasoning model's thought (the core splits it out of ``text``; an upstream engine that
    #: separates it sends it here)
    reasoning: str = ""
    #: on the last delta of an upstream engine that counts them: how many of ``tokens`` were
    #: its thought's (None: not said; the core counts locally generated thoughts itself)
    reasoning_tokens: int | None = None
    #: on the last delta of a speculating engine: the tokens it guessed for this generation,
    #: and how many of them the model kept (None: no speculative decoding)
    draft_tokens: int | None = None
    accepted_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class FimTokens:
    """A model's fill-in-the-middle tokens as their text (special tokens: the prompt's
    tokenization turns them back into their ids); ``repo`` and ``file_sep`` '' where the model
    has no repo-level format."""

    prefix: str
    suffix: str
    middle: str
    repo: str = ""
    file_sep: str = ""


@dataclass(frozen=True, slots=True)
class PromptFormat:
    """What the service needs to build prompts for a model."""

    chat_template: str | None
    bos_token: str = ""
    eos_token: str = ""
    context_length: int = 2048
    #: the model's fill-in-the-middle tokens; None: it has none
    fim: FimTokens | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """A model engine: start, health, close. What it can do with the model (generate, embed,
    tokenize, ...) is an ability of its own (:mod:`llmserver.backends.abilities`)."""

    #: how many generations the engine can truly run at once (the default slot count)
    max_parallel: ClassVar[int]

    async def start(self) -> None:
        """Load the model. Raise :class:`ModelLoadError` with a clear reason on failure."""

    async def health(self) -> bool:
        """True when the engine can serve."""

    async def close(self) -> None:
        """Free the model and everything it holds."""


EmbeddingInput = str | Sequence[int]


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """What an embedding model offers."""

    dimensions: int
    max_input_tokens: int
    #: accepts inputs given as token ids (as well as text)
    token_input: bool = False
    #: trained so that truncated, renormalised vectors stay meaningful (``dimensions``)
    matryoshka: bool = False


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """One vector per input, and how many tokens the model read for each input."""

    vectors: list[list[float]]
    token_counts: list[int]


def utf8(text: str) -> bytes:
    """``text`` as UTF-8 for an engine. The server replaces unpaired surrogates where JSON
    arrives, so one here came another way; it is the caller's 400, never an engine's crash."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"The text holds a character that is not valid Unicode (an unpaired surrogate at "
            f"position {exc.start})."
        ) from None


def check_input_lengths(counts: Sequence[int], limit: int) -> None:
    """400 (context length) for the first embedding input longer than ``limit`` tokens."""
    for index, count in enumerate(counts):
        if count > limit:
            raise ContextLengthError(
                f"This model's maximum input length is {limit} tokens, but input {index} has "
                f"{count} tokens. Please shorten the input.",
                param="input",
            )


class BackendFactory(Protocol):
    """What the registry holds: a class built from its own config type."""

    config_type: ClassVar[type[ModelConfig]]

    def __call__(self, config: Any) -> Backend: ...


class ModelLoadError(Exception):
    """A model could not be loaded; the message is the reason shown to clients."""


#: what engines say when an allocation fails (llama.cpp's decode returns 1 when the KV cache
#: has no room left for the batch)
_OOM_MARKERS = ("out of memory", "failed to allocate", "llama_decode returned 1", "cudaerrormemory")


def engine_failure(engine: str, exc: BaseException) -> ServiceUnavailableError:
    """Translate an engine's exception at the backend boundary: running out of memory becomes
    503 "out of memory during inference", anything else 503 with the engine's message."""
    text = str(exc).lower()
    if (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"  # torch.cuda.OutOfMemoryError
        or any(marker in text for marker in _OOM_MARKERS)
    ):
        return OutOfMemoryError()
    return EngineError(f"{engine} failed: {exc}")


class StopMatcher:
    """Finds stop strings in streamed text, holding back only what could begin one."""

    __slots__ = ("_held", "_longest", "_stops", "matched")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""
        #: the stop string that was reached (the earliest in the text), once one was
        self.matched: str | None = None

    def feed(self, text: str) -> tuple[str, bool]:
        """Add text; return what is safe to emit and whether a stop string was reached."""
        if not self._stops:
            return text, False
        buf = self._held + text
        hits = [(i, len(s), s) for s in self._stops if (i := buf.find(s)) >= 0]
        if hits:
            self._held = ""
            start, _, self.matched = min(hits)
            return buf[:start], True
        keep = 0
        for size in range(min(self._longest - 1, len(buf)), 0, -1):
            tail = buf[-size:]
            if any(s.startswith(tail) for s in self._stops):
                keep = size
                break
        self._held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        """Release held-back text at the end of generation."""
        held, self._held = self._held, ""
        return held
