"""Prompt plans: what one call asks of a model, ready to become its generation requests.

The service makes a plan once it has resolved, authorised and masked a request; the generation
asks it for its requests once the model is loaded and a slot is held (a model loaded on demand
has no tokenizer or chat template before), and for a fresh output parser for each choice. Both
come from the plan's own fields and the handle they are given, in either order. One plan type
for each kind of work:

- :class:`ChatPlan`: the model's chat template applied to the messages and tools;
- :class:`TextPlan`: a plain continuation of each prompt (also a chat under a
  ``chat_prompt_format``: the format around the last message is then the whole prompt);
- :class:`FimPlan`: code for a hole, in the model's fill-in-the-middle format
  (:mod:`llmserver.core.fim`);
- :class:`RelayPlan`: messages or prompts passed on to an upstream engine, which applies its
  own template and tokenizes and counts itself.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from llmserver.backends.base import GenerationRequest, JsonConstraint, SamplingParams
from llmserver.backends.thought import ThoughtSpec
from llmserver.config.model_configs import SamplingDefaults
from llmserver.core import reasoning
from llmserver.core.fim import Infill, fim_format, fim_prompt, require_format
from llmserver.core.requests import ChatRequest, Message, Sampling, Thinking
from llmserver.core.tools.plan import ToolPlan, wire_messages, wire_tool, wire_tool_choice
from llmserver.errors import ContextLengthError, InvalidRequestError

if TYPE_CHECKING:
    from llmserver.core.manager import ModelHandle
    from llmserver.core.templating import ChatTemplate
    from llmserver.core.tools.stream import ForcedCalls, ToolStream

T = TypeVar("T")
logger = logging.getLogger("llmserver.prompts")


class Plan(Protocol):
    """What a generation needs of a prompt plan."""

    @property
    def n_choices(self) -> int:
        """How many choices the call produces (prompts times ``n``)."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input texts as they go to the model (masked where masking applies): the
        messages' contents of a chat, the prompts of a text request."""

    def requests(self, handle: ModelHandle) -> list[GenerationRequest]:
        """One generation request per choice, for the loaded model."""

    def parser(self, handle: ModelHandle) -> ToolStream | ForcedCalls | None:
        """A fresh tool-call parser for one choice (None: replies are plain content)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """How every plan samples: ``n`` choices of each prompt, within ``constraint``."""

    sampling: Sampling
    n: int = 1
    constraint: JsonConstraint | None = None

    def parser(self, handle: ModelHandle) -> ToolStream | ForcedCalls | None:
        """No tool calls to read: replies are plain content."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatPlan(_Plan):
    """A chat on a model that tokenizes here: its chat template applied to the messages, the
    tool plan saying how the tools reach the template and how calls come back."""

    messages: tuple[Message, ...]
    tools: ToolPlan = field(default_factory=ToolPlan)
    documents: tuple[Mapping[str, Any], ...] = ()
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    thinking: Thinking = field(default_factory=Thinking)

    @classmethod
    def of(cls, req: ChatRequest, messages: Sequence[Message]) -> ChatPlan:
        """The plan for ``req`` with these (possibly masked) messages."""
        return cls(
            sampling=req.sampling,
            n=req.n,
            constraint=req.constraint,
            messages=tuple(messages),
            tools=ToolPlan.of(req),
            documents=req.documents,
            template_kwargs=req.template_kwargs,
            thinking=req.thinking,
        )

    @property
    def n_choices(self) -> int:
        """One prompt: ``n`` choices."""
        return self.n

    @property
    def inputs(self) -> tuple[str, ...]:
        """The messages' contents."""
        return tuple(m.content for m in self.messages)

    def prompt(self, handle: ModelHandle) -> str:
        """The prompt: the model's chat template applied to the messages, tools, calls and
        tool results (what a chat generates from and what a token count counts)."""
        return self._rendered(handle)[0]

    def _rendered(self, handle: ModelHandle) -> tuple[str, ThoughtSpec | None]:
        """The prompt and, for a reasoning model, how its output holds the thought."""
        template = _template(handle)
        constraint = self.constraint or self.tools.constraint(template)
        # a lazy constraint (tools in auto mode) leaves the output free until a call starts
        constrained = constraint is not None and not constraint.triggers
        messages = self.tools.messages(self.messages, template)
        tools = self.tools.template_tools(template)

        def render(kwargs: Mapping[str, Any]) -> str:
            return template.render(messages, tools=tools, documents=self.documents, kwargs=kwargs)

        return reasoning.render(handle, self.thinking, self.template_kwargs, constrained, render)

    def requests(self, handle: ModelHandle) -> list[GenerationRequest]:
        """The rendered prompt's choices, constrained to a call where the tool choice says."""
        template = _template(handle)
        constraint = self.constraint or self.tools.constraint(template)
        sampling = self.sampling
        if self.tools.active and template.takes_tools:
            # native tool markup is often made of special tokens: let them through as text
            sampling = dataclasses.replace(sampling, special_text=True)
        prompt, thought = self._rendered(handle)
        out = _local(handle, sampling, self.n, [prompt], constraint)
        return [dataclasses.replace(r, thought=thought) for r in out] if thought else out

    def parser(self, handle: ModelHandle) -> ToolStream | ForcedCalls | None:
        """A parser for calls in the format the model's template teaches."""
        return self.tools.parser(_template(handle))


@dataclass(frozen=True, slots=True, kw_only=True)
class TextPlan(_Plan):
    """A plain continuation of each prompt on a model that tokenizes here."""

    prompts: tuple[str, ...]
    inputs: tuple[str, ...]

    @property
    def n_choices(self) -> int:
        """``n`` choices of each prompt."""
        return len(self.prompts) * self.n

    def requests(self, handle: ModelHandle) -> list[GenerationRequest]:
        """Each prompt tokenized and checked against the context, ``n`` times."""
        return _local(handle, self.sampling, self.n, self.prompts, self.constraint)


@dataclass(frozen=True, slots=True, kw_only=True)
class FimPlan(_Plan):
    """Code for a hole, on a model that tokenizes here: the prompt is made once the model is
    loaded, since a GGUF's FIM tokens are known only then."""

    infill: Infill

    @property
    def n_choices(self) -> int:
        """One prompt: ``n`` choices."""
        return self.n

    @property
    def inputs(self) -> tuple[str, ...]:
        """The code around the hole and the other files."""
        return self.infill.texts()

    def prompt(self, handle: ModelHandle) -> str:
        """The prompt in the model's FIM format (a 400 for a model without one)."""
        return fim_prompt(require_format(handle), self.infill)

    def requests(self, handle: ModelHandle) -> list[GenerationRequest]:
        """The prompt's choices."""
        return _local(handle, self.sampling, self.n, [self.prompt(handle)], self.constraint)


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayPlan(_Plan):
    """Prompts, or a chat's messages, for an engine that applies its template, tokenizes and
    counts itself (so the context check is its too). Tools and the tool choice go along in
    OpenAI's shape, and the engine's calls come back parsed."""

    prompts: tuple[str, ...]
    inputs: tuple[str, ...]
    #: a chat's messages in OpenAI's shape (the prompt is then empty); None: a completion
    messages: tuple[dict[str, Any], ...] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    #: the code after the hole, for an engine that fills the middle itself
    suffix: str | None = None
    #: a chat's thought as the caller asked for it and the model's config shows it
    thought: ThoughtSpec | None = None

    @property
    def n_choices(self) -> int:
        """``n`` choices of each prompt."""
        return len(self.prompts) * self.n

    def requests(self, handle: ModelHandle) -> list[GenerationRequest]:
        """Each prompt ``n`` times, with the model's explicitly configured defaults only."""
        limit = self.sampling.max_tokens or handle.config.defaults.max_tokens or 0
        defaults = _explicit_extras(handle.config.defaults)
        out = []
        for prompt in self.prompts:
            out += _choices(
                self.sampling,
                self.n,
                defaults,
                limit,
                prompt,
                (),
                constraint=self.constraint,
                messages=self.messages,
                tools=self.tools,
                tool_choice=self.tool_choice,
                suffix=self.suffix,
            )
        return [dataclasses.replace(r, thought=self.thought) for r in out] if self.thought else out


def chat_plan(
    handle: ModelHandle, req: ChatRequest, messages: Sequence[Message], prompt_format: str | None
) -> Plan:
    """The plan for a chat: the template's (:class:`ChatPlan`), the engine's upstream
    (:class:`RelayPlan`), or under a ``chat_prompt_format`` (a format string with
    ``{prompt}``) a plain continuation of the format around the last message."""
    inputs = tuple(m.content for m in messages)
    upstream = handle.tokenizer() is None
    if prompt_format is not None:
        prompt = (prompt_format.replace("{prompt}", messages[-1].content if messages else ""),)
        kind = RelayPlan if upstream else TextPlan
        return kind(
            sampling=req.sampling, n=req.n, constraint=req.constraint, prompts=prompt, inputs=inputs
        )
    if upstream:
        return RelayPlan(
            sampling=req.sampling,
            n=req.n,
            constraint=req.constraint,
            prompts=("",),
            inputs=inputs,
            messages=tuple(wire_messages(messages)),
            tools=tuple(wire_tool(t) for t in req.tools),
            tool_choice=wire_tool_choice(req),
            thought=reasoning.relay_spec(handle, req.thinking),
        )
    return ChatPlan.of(req, messages)


def text_plan(
    handle: ModelHandle,
    prompts: Sequence[str],
    sampling: Sampling,
    n: int,
    constraint: JsonConstraint | None,
) -> Plan:
    """The plan for a plain continuation of each prompt, here or upstream."""
    kind = RelayPlan if handle.tokenizer() is None else TextPlan
    return kind(
        sampling=sampling, n=n, constraint=constraint, prompts=tuple(prompts), inputs=tuple(prompts)
    )


def fim_plan(handle: ModelHandle, infill: Infill, sampling: Sampling, n: int) -> Plan:
    """The plan for code in a hole: :class:`FimPlan` here (a model loaded now is checked for
    a format now); upstream, the prompt in the FIM format the model's config gives, else the
    prefix and the suffix passed on for the engine to fill (its 400 relayed if it cannot)."""
    if handle.tokenizer() is None:
        if fim_format(handle) is not None:
            prompt = fim_prompt(require_format(handle), infill)
            return RelayPlan(sampling=sampling, n=n, prompts=(prompt,), inputs=infill.texts())
        if infill.extra:
            raise InvalidRequestError(
                f"model '{handle.id}' is served upstream without a fill-in-the-middle format "
                "in its config, so other files cannot be placed in its prompt",
                param="input_extra",
            )
        prefix = infill.prefix + infill.typed
        return RelayPlan(
            sampling=sampling, n=n, prompts=(prefix,), inputs=infill.texts(), suffix=infill.suffix
        )
    if handle.state == "ready":
        require_format(handle)
    return FimPlan(sampling=sampling, n=n, infill=infill)


# -- generation requests -------------------------------------------------------------------------


def _template(handle: ModelHandle) -> ChatTemplate:
    template = handle.template
    assert template is not None, "a model that tokenizes here has a chat template once loaded"
    return template


def _local(
    handle: ModelHandle,
    sampling: Sampling,
    n: int,
    prompts: Sequence[str],
    constraint: JsonConstraint | None,
) -> list[GenerationRequest]:
    """Each prompt tokenized, its room in the context checked, ``n`` times."""
    tokenizer = handle.tokenizer()
    assert tokenizer is not None
    assert handle.prompt_format is not None
    context = handle.prompt_format.context_length
    if sampling.context_limit is not None:
        context = min(context, sampling.context_limit)
    out = []
    for prompt in prompts:
        tokens = tokenizer.tokenize(prompt)
        if not tokens:
            raise InvalidRequestError("prompt must not be empty", param="prompt")
        limit = sampling.max_tokens
        room = context - len(tokens)
        if limit is not None and sampling.fit_context and limit > room > 0:
            logger.info(
                "max_tokens %d is past the context of model '%s' (%d tokens, %d in the "
                "prompt): clamped to %d",
                limit,
                handle.id,
                context,
                len(tokens),
                room,
            )
            limit = room
        max_tokens = _max_tokens(handle, len(tokens), limit, context)
        defaults = handle.config.defaults
        out += _choices(sampling, n, defaults, max_tokens, prompt, tokens, constraint=constraint)
    return out


def _choices(
    sampling: Sampling,
    n: int,
    defaults: SamplingDefaults,
    max_tokens: int,
    prompt: str,
    tokens: Sequence[int],
    *,
    constraint: JsonConstraint | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    tools: Sequence[Mapping[str, Any]] = (),
    tool_choice: str | Mapping[str, Any] | None = None,
    suffix: str | None = None,
) -> list[GenerationRequest]:
    """One generation per choice (``n``); choice ``i`` samples with ``seed + i``."""
    out = []
    for i in range(n):
        seed = None if sampling.seed is None else sampling.seed + i
        params = sampling_params(sampling, defaults, max_tokens, seed)
        request_id = uuid.uuid4().hex[:12]
        out.append(
            GenerationRequest(
                request_id,
                prompt,
                tokens,
                params,
                constraint,
                messages,
                tools,
                tool_choice,
                suffix,
            )
        )
    return out


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value


def sampling_params(
    sampling: Sampling, defaults: SamplingDefaults, max_tokens: int, seed: int | None
) -> SamplingParams:
    """Request values over the model's defaults."""
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_pick(sampling.temperature, defaults.temperature),
        top_p=_pick(sampling.top_p, defaults.top_p),
        top_k=_pick(sampling.top_k, defaults.top_k),
        min_p=_pick(sampling.min_p, defaults.min_p),
        repeat_penalty=_pick(sampling.repeat_penalty, defaults.repeat_penalty),
        presence_penalty=_pick(sampling.presence_penalty, 0.0),
        frequency_penalty=_pick(sampling.frequency_penalty, 0.0),
        seed=seed,
        stop=sampling.stop,
        ignore_eos=sampling.ignore_eos,
        logprobs=sampling.logprobs,
        special_text=sampling.special_text,
    )


def _explicit_extras(defaults: SamplingDefaults) -> SamplingDefaults:
    """Defaults whose non-OpenAI extras are neutral unless the config sets them, so an upstream
    engine is not sent ``top_k``/``min_p``/``repeat_penalty`` that nobody asked for."""
    neutral = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
    keep = {k: v for k, v in neutral.items() if k not in defaults.model_fields_set}
    return defaults.model_copy(update=keep)


def _max_tokens(handle: ModelHandle, prompt_len: int, limit: int | None, context: int) -> int:
    wanted = limit if limit is not None else handle.config.defaults.max_tokens
    room = context - prompt_len
    if wanted is None:
        wanted = room
    if prompt_len + wanted > context or room < 1:
        raise ContextLengthError(
            f"This model's maximum context length is {context} tokens. However, you "
            f"requested {prompt_len + wanted} tokens ({prompt_len} in the prompt, {wanted} "
            "in the completion). Please reduce the length of the prompt or completion.",
            param="max_tokens" if limit is not None else "messages",
        )
    return wanted
