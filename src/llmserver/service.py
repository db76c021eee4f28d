"""From a validated request to generations and back: prompts, limits, usage, response bodies.

Backends only stream. Every response, streamed or not, is built here from the same stream of
``(choice index, Delta)`` events; a non-streaming response is that stream collected once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from llmserver.backends.base import (
    Delta,
    GenerationRequest,
    JsonConstraint,
    SamplingParams,
    embedder,
)
from llmserver.errors import ContextLengthError, InvalidRequestError, ServiceUnavailableError
from llmserver.models import ModelHandle, ModelManager
from llmserver.protocol import ChatCompletionRequest, CompletionRequest, _Sampling
from llmserver.settings import SamplingDefaults, Settings

logger = logging.getLogger("llmserver.service")

Event = tuple[int, Delta]


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


@dataclass
class Generation:
    """One API call's generations: the model, the prompts to build, and its usage so far."""

    handle: ModelHandle
    build: Callable[[], list[GenerationRequest]]
    id: str
    created: int = field(default_factory=lambda: int(time.time()))
    usage: Usage = field(default_factory=Usage)
    prompts: list[str] = field(default_factory=list)

    async def events(self) -> AsyncIterator[Event]:
        """Take a slot, build the prompts, then stream every choice's deltas in order."""
        async with self.handle.limiter.slot():
            requests = self.build()
            counted: set[str] = set()
            for req in requests:
                if req.prompt not in counted:
                    counted.add(req.prompt)
                    self.usage.prompt_tokens += len(req.prompt_tokens)
                self.prompts.append(req.prompt)
            for index, req in enumerate(requests):
                async for delta in self.handle.backend.generate(req):
                    self.usage.completion_tokens += delta.tokens
                    yield index, delta


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


def _constraint(req: ChatCompletionRequest) -> JsonConstraint | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.json_schema is not None:
        return JsonConstraint(fmt.json_schema.schema_ or None)
    return JsonConstraint(None)


class Service:
    """Turns chat and completion requests into generations on the right model."""

    def __init__(self, manager: ModelManager, settings: Settings) -> None:
        self.manager = manager
        self.settings = settings

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
        if handle.tokenizer() is None:
            raise ServiceUnavailableError(f"model '{handle.id}' cannot tokenize prompts")
        return handle

    def chat(self, req: ChatCompletionRequest) -> Generation:
        """A chat completion: the prompt is the model's chat template applied to the messages."""
        handle = self._check(req)

        def build() -> list[GenerationRequest]:
            assert handle.template is not None
            messages = [
                {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in req.messages
            ]
            prompt = handle.template.render(messages)
            return self._requests(handle, req, [prompt], req.token_limit(), _constraint(req))

        return Generation(handle, build, f"chatcmpl-{uuid.uuid4().hex}")

    def completion(self, req: CompletionRequest) -> Generation:
        """A text completion of each prompt."""
        handle = self._check(req)

        def build() -> list[GenerationRequest]:
            return self._requests(handle, req, req.prompts(), req.token_limit(), None)

        return Generation(handle, build, f"cmpl-{uuid.uuid4().hex}")

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
            for i in range(req.n):
                seed = None if req.seed is None else req.seed + i
                params = sampling_params(req, handle.config.defaults, max_tokens, seed)
                rid = f"{uuid.uuid4().hex[:12]}"
                out.append(GenerationRequest(rid, prompt, tokens, params, constraint))
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
