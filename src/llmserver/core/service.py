"""From a validated request to generations and back: prompts, limits, usage, response bodies.

Backends only stream. Every response, streamed or not, is built here from the same stream of
``(choice index, Delta)`` events; a non-streaming response is that stream collected once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmserver.backends.base import (
    Delta,
    GenerationRequest,
    JsonConstraint,
    SamplingParams,
    embedder,
)
from llmserver.errors import ContextLengthError, InvalidRequestError
from llmserver.config.model_configs import SamplingDefaults
from llmserver.core.manager import ModelHandle, ModelManager
from llmserver.privacy import PIIMasker
from llmserver.surfaces.openai.schemas import ChatCompletionRequest, CompletionRequest, _Sampling
from llmserver.core.scheduling import Deadline
from llmserver.config.settings import Settings

if TYPE_CHECKING:
    from llmserver.security.pii import OutputMasker

logger = logging.getLogger("llmserver.service")

Event = tuple[int, Delta]


async def _nothing() -> None:
    return None


@dataclass(slots=True)
class Usage:
    """Token counts of one API call; filled in as the generation runs."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def body(self) -> dict[str, int]:
        """OpenAI's ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass(slots=True)
class Timing:
    """When a generation started and how long it took to its first token."""

    started: float = field(default_factory=time.perf_counter)
    ttft_s: float | None = None


@dataclass
class Generation:
    """One API call's generations: the model, the prompts to build, and its usage so far."""

    handle: ModelHandle
    build: Callable[[], list[GenerationRequest]]
    id: str
    created: int = field(default_factory=lambda: int(time.time()))
    usage: Usage = field(default_factory=Usage)
    prompts: list[str] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)
    #: loads the model first when it is unloaded and may load on demand
    ensure_loaded: Callable[[], Awaitable[None]] = _nothing
    #: masks personal data in the generated text, stream-safe (``mask_output``)
    output: OutputMasker | None = None

    async def events(self) -> AsyncIterator[Event]:
        """Take a slot, build the prompts, then stream every choice's deltas in order.

        The slot comes first, before any expensive work; the time limit starts with the slot.
        """
        await self.ensure_loaded()
        async with self.handle.limiter.slot():
            # the model may have been unloaded while this request waited for its slot
            self.handle.check_ready()
            self.handle.touch()
            deadline = Deadline(self.handle.timeout_s)
            requests = self.build()
            # a prompt shared by several choices is counted once, as OpenAI does
            first_of_prompt: set[int] = set()
            seen: set[str] = set()
            for index, req in enumerate(requests):
                key = req.prompt if req.messages is None else "\0messages"
                if key not in seen:
                    seen.add(key)
                    first_of_prompt.add(index)
                    self.usage.prompt_tokens += len(req.prompt_tokens)
                self.prompts.append(req.prompt)
            for index, req in enumerate(requests):
                async for delta in deadline.bound(self.handle.backend.generate(req)):
                    self.usage.completion_tokens += delta.tokens
                    if self.timing.ttft_s is None and (delta.text or delta.tokens):
                        self.timing.ttft_s = time.perf_counter() - self.timing.started
                    if delta.prompt_tokens is not None and index in first_of_prompt:
                        self.usage.prompt_tokens += delta.prompt_tokens
                    if self.output is not None:
                        delta = self._masked(index, delta)
                    yield index, delta

    def _masked(self, index: int, delta: Delta) -> Delta:
        assert self.output is not None
        text = self.output.feed(index, delta.text)
        if delta.finish_reason is not None:
            text += self.output.flush(index)
        return dataclasses.replace(delta, text=text)


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def sampling_params(
    req: _Sampling, defaults: SamplingDefaults, max_tokens: int, seed: int | None
) -> SamplingParams:
    """Request values over the model's defaults."""
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_pick(req.temperature, defaults.temperature),
        top_p=_pick(req.top_p, defaults.top_p),
        top_k=_pick(req.top_k, defaults.top_k),
        min_p=_pick(req.min_p, defaults.min_p),
        repeat_penalty=_pick(req.repeat_penalty, defaults.repeat_penalty),
        presence_penalty=_pick(req.presence_penalty, 0.0),
        frequency_penalty=_pick(req.frequency_penalty, 0.0),
        seed=seed,
        stop=req.stop_list(),
        ignore_eos=req.ignore_eos,
    )


def _explicit_extras(defaults: SamplingDefaults) -> SamplingDefaults:
    """Defaults whose non-OpenAI extras are neutral unless the config sets them, so an upstream
    engine is not sent ``top_k``/``min_p``/``repeat_penalty`` that nobody asked for."""
    neutral = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
    keep = {k: v for k, v in neutral.items() if k not in defaults.model_fields_set}
    return defaults.model_copy(update=keep)


def _constraint(req: ChatCompletionRequest) -> JsonConstraint | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.json_schema is not None:
        return JsonConstraint(fmt.json_schema.schema_ or None)
    return JsonConstraint(None)


def _choices(
    req: _Sampling,
    prompt: str,
    tokens: Sequence[int],
    defaults: SamplingDefaults,
    max_tokens: int,
    constraint: JsonConstraint | None,
    messages: list[dict[str, str]] | None,
) -> list[GenerationRequest]:
    """One generation per choice (``n``); choice ``i`` samples with ``seed + i``."""
    out = []
    for i in range(req.n):
        seed = None if req.seed is None else req.seed + i
        params = sampling_params(req, defaults, max_tokens, seed)
        out.append(
            GenerationRequest(uuid.uuid4().hex[:12], prompt, tokens, params, constraint, messages)
        )
    return out


class Service:
    """Turns chat and completion requests into generations on the right model."""

    def __init__(self, manager: ModelManager, settings: Settings, masker: PIIMasker) -> None:
        self.manager = manager
        self.settings = settings
        self._masker = masker

    def _log_text(self, text: str) -> None:
        """Request text only at DEBUG, masked and cut short (never at INFO)."""
        if logger.isEnabledFor(logging.DEBUG):
            from llmserver.observability.logs import debug_text

            logger.debug("request text: %s", debug_text(self._masker, text))

    def _check(self, req: _Sampling) -> ModelHandle:
        if req.n > self.settings.max_n:
            raise InvalidRequestError(f"n must be at most {self.settings.max_n}", param="n")
        if unknown := req.unknown_fields():
            logger.debug("ignoring unknown request fields: %s", ", ".join(unknown))
        handle = self.manager.resolve(req.model)
        if handle.tokenizer() is None and embedder(handle.backend) is not None:
            raise InvalidRequestError(
                f"model '{handle.id}' is an embedding model; use /v1/embeddings", param="model"
            )
        return handle

    def _generation(
        self, handle: ModelHandle, build: Callable[[], list[GenerationRequest]], prefix: str
    ) -> Generation:
        async def ensure_loaded() -> None:
            await self.manager.ensure_loaded(handle)

        gen_id = f"{prefix}-{uuid.uuid4().hex}"
        return Generation(handle, build, gen_id, ensure_loaded=ensure_loaded)

    def chat(self, req: ChatCompletionRequest) -> Generation:
        """A chat completion: the prompt is the model's chat template applied to the messages.

        A model without a tokenizer (upstream) gets the messages themselves.
        """
        handle = self._check(req)
        if req.messages:
            self._log_text(req.messages[-1].text())
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in req.messages
        ]

        def build() -> list[GenerationRequest]:
            if handle.tokenizer() is None:
                return self._passthrough(handle, req, [""], messages, _constraint(req))
            assert handle.template is not None
            prompt = handle.template.render(messages)
            return self._requests(handle, req, [prompt], req.token_limit(), _constraint(req))

        return self._generation(handle, build, "chatcmpl")

    def completion(self, req: CompletionRequest) -> Generation:
        """A text completion of each prompt."""
        if len(req.prompts()) > self.settings.max_prompts:
            raise InvalidRequestError(
                f"prompt may hold at most {self.settings.max_prompts} prompts",
                param="prompt",
                code="too_many_prompts",
            )
        handle = self._check(req)
        self._log_text(" | ".join(req.prompts()))

        def build() -> list[GenerationRequest]:
            if handle.tokenizer() is None:
                return self._passthrough(handle, req, req.prompts(), None, None)
            return self._requests(handle, req, req.prompts(), req.token_limit(), None)

        return self._generation(handle, build, "cmpl")

    def _passthrough(
        self,
        handle: ModelHandle,
        req: ChatCompletionRequest | CompletionRequest,
        prompts: list[str],
        messages: list[dict[str, str]] | None,
        constraint: JsonConstraint | None,
    ) -> list[GenerationRequest]:
        """Requests for an engine that tokenizes and counts itself: the context check is its."""
        limit = req.token_limit() or handle.config.defaults.max_tokens or 0
        defaults = _explicit_extras(handle.config.defaults)
        return [
            choice
            for prompt in prompts
            for choice in _choices(req, prompt, (), defaults, limit, constraint, messages)
        ]

    def _requests(
        self,
        handle: ModelHandle,
        req: _Sampling,
        prompts: list[str],
        limit: int | None,
        constraint: JsonConstraint | None,
    ) -> list[GenerationRequest]:
        tokenizer = handle.tokenizer()
        assert tokenizer is not None
        assert handle.prompt_format is not None
        context = handle.prompt_format.context_length
        out = []
        for prompt in prompts:
            tokens = tokenizer.tokenize(prompt)
            if not tokens:
                raise InvalidRequestError("prompt must not be empty", param="prompt")
            max_tokens = self._max_tokens(handle, len(tokens), limit, context)
            defaults = handle.config.defaults
            out += _choices(req, prompt, tokens, defaults, max_tokens, constraint, None)
        return out

    @staticmethod
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


# -- response bodies ---------------------------------------------------------------------------


async def collect(gen: Generation, n_choices: int) -> tuple[list[str], list[str | None]]:
    """Run a generation to the end: each choice's text and finish reason."""
    texts = [""] * n_choices
    reasons: list[str | None] = [None] * n_choices
    async for index, delta in gen.events():
        texts[index] += delta.text
        if delta.finish_reason is not None:
            reasons[index] = delta.finish_reason
    return texts, reasons


async def chat_response(gen: Generation, n_choices: int) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body."""
    texts, reasons = await collect(gen, n_choices)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": reasons[i],
        }
        for i, text in enumerate(texts)
    ]
    return {
        "id": gen.id,
        "object": "chat.completion",
        "created": gen.created,
        "model": gen.handle.id,
        "choices": choices,
        "usage": gen.usage.body(),
        "system_fingerprint": None,
    }


async def completion_response(gen: Generation, n_choices: int, echo: bool) -> dict[str, Any]:
    """A non-streaming ``text_completion`` body."""
    texts, reasons = await collect(gen, n_choices)
    choices = [
        {
            "text": (gen.prompts[i] if echo else "") + text,
            "index": i,
            "logprobs": None,
            "finish_reason": reasons[i],
        }
        for i, text in enumerate(texts)
    ]
    return {
        "id": gen.id,
        "object": "text_completion",
        "created": gen.created,
        "model": gen.handle.id,
        "choices": choices,
        "usage": gen.usage.body(),
    }


async def chat_chunks(gen: Generation, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    """``chat.completion.chunk`` objects: role first, content, finish_reason, optional usage."""
    head = {"id": gen.id, "object": "chat.completion.chunk", "created": gen.created}
    head["model"] = gen.handle.id
    started: set[int] = set()

    def chunk(index: int, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    async for index, delta in gen.events():
        if index not in started:
            started.add(index)
            yield chunk(index, {"role": "assistant", "content": ""}, None)
        if delta.text:
            yield chunk(index, {"content": delta.text}, None)
        if delta.finish_reason is not None:
            yield chunk(index, {}, delta.finish_reason)
    if include_usage:
        yield {**head, "choices": [], "usage": gen.usage.body()}


async def completion_chunks(
    gen: Generation, include_usage: bool, echo: bool
) -> AsyncIterator[dict[str, Any]]:
    """Streamed ``text_completion`` objects."""
    head = {"id": gen.id, "object": "text_completion", "created": gen.created}
    head["model"] = gen.handle.id
    echoed: set[int] = set()
    async for index, delta in gen.events():
        text = delta.text
        if echo and index not in echoed:
            echoed.add(index)
            text = gen.prompts[index] + text
        if text or delta.finish_reason is not None:
            choice = {
                "text": text,
                "index": index,
                "logprobs": None,
                "finish_reason": delta.finish_reason,
            }
            yield {**head, "choices": [choice]}
    if include_usage:
        yield {**head, "choices": [], "usage": gen.usage.body()}
