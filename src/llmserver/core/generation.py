"""One call's generations as a single stream of ``(choice index, Delta)`` events.

Backends only stream. Every answer, streamed or not, is built from these events; a
non-streaming answer is the stream collected once (:meth:`Generation.collect`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmserver.backends.base import Delta, GenerationRequest, TokenLogprob, ToolCallDelta
from llmserver.backends.thought import ThoughtSplitter
from llmserver.core.fim import CodeLimits, LimitCut
from llmserver.core.requests import ToolCall
from llmserver.core.response_cache import Cache, is_deterministic, request_key
from llmserver.core.scheduling import Deadline
from llmserver.core.usage import Timing, Usage

if TYPE_CHECKING:
    from llmserver.core.manager import ModelHandle, ModelManager
    from llmserver.core.prompts import Plan
    from llmserver.core.tools.stream import ForcedCalls, ToolStream
    from llmserver.security.pii import OutputStreams

Event = tuple[int, Delta]


@dataclass(frozen=True, slots=True)
class Result:
    """A generation run to its end: each choice's text, finish reason, the stop string it
    ended on (None when it did not end on one, or the engine does not say), its tool calls and
    its tokens' logprobs."""

    texts: list[str]
    finish_reasons: list[str | None]
    stop_sequences: list[str | None] = field(default_factory=list)
    tool_calls: list[list[ToolCall]] = field(default_factory=list)
    logprobs: list[list[TokenLogprob]] = field(default_factory=list)
    #: each choice's thought (a reasoning model's; '' for none)
    reasonings: list[str] = field(default_factory=list)


def add_call_delta(calls: list[ToolCall], piece: ToolCallDelta) -> None:
    """Fold one streamed tool-call piece into the calls so far."""
    while piece.index >= len(calls):
        calls.append(ToolCall("", "", ""))
    call = calls[piece.index]
    calls[piece.index] = ToolCall(
        call.id or piece.id or "", call.name or piece.name or "", call.arguments + piece.arguments
    )


def one_per_call(delta: Delta) -> tuple[ToolCallDelta, ...]:
    """The delta's tool-call pieces with those of one call joined, in the order the calls
    first appear: OpenAI sends at most one entry per call in a chunk, and clients that read
    ``tool_calls[0]`` of each chunk lose the rest."""
    joined: dict[int, ToolCallDelta] = {}
    for piece in delta.tool_calls:
        if (seen := joined.get(piece.index)) is None:
            joined[piece.index] = piece
            continue
        joined[piece.index] = ToolCallDelta(
            piece.index,
            seen.id or piece.id,
            seen.name or piece.name,
            seen.arguments + piece.arguments,
        )
    return tuple(joined.values())


@dataclass(frozen=True, slots=True)
class OutputPolicy:
    """What happens to a generation's output on its way out, as the service decided it."""

    #: masks personal data in the generated text, stream-safe (``mask_output``)
    masker: OutputStreams | None = None
    #: the model's response cache (None: not cached), and whose answers this call may see
    #: (None: shared between keys)
    cache: Cache[tuple[Event, ...]] | None = None
    cache_scope: str | None = None
    #: puts the request's masked values back in place of their placeholders (``pii_restore``);
    #: after the cache, which keeps the placeholders only
    restorer: OutputStreams | None = None
    #: code-completion limits that end a choice early (llama-server's ``/infill``)
    limits: CodeLimits | None = None


@dataclass(frozen=True)
class Generation:
    """One call's generations: the model, the prompt plan, the output policy, and its usage so
    far. ``manager`` loads the model first when it is unloaded and may load on demand."""

    handle: ModelHandle
    manager: ModelManager
    plan: Plan
    id: str
    policy: OutputPolicy = field(default_factory=OutputPolicy)
    created: int = field(default_factory=lambda: int(time.time()))
    usage: Usage = field(default_factory=Usage)
    #: the rendered prompt of each choice, filled in once the generation has its slot
    prompts: list[str] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)
    #: where OpenAI's chat surface puts a thought (``reasoning_content``, ``reasoning``,
    #: ``both`` or ``inline``), as the model's config or the server's settings say
    reasoning_field: str = "reasoning_content"

    @property
    def n_choices(self) -> int:
        """The number of choices the call produces (prompts times ``n``)."""
        return self.plan.n_choices

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input texts as they go to the model (masked where masking applies): the
        messages' contents of a chat, the prompts of a text request."""
        return self.plan.inputs

    @property
    def model(self) -> str:
        """The canonical id of the model that generates (also when asked by alias)."""
        return self.handle.id

    @property
    def backend(self) -> str:
        """The name of the model's backend."""
        return self.handle.config.backend

    async def events(self) -> AsyncIterator[Event]:
        """Load the model if it loads on demand, take a slot, have the plan build the requests,
        then stream every choice's deltas in order, each read by a fresh parser of the plan's.

        The slot comes first, before any expensive work; the time limit starts with the slot.
        """
        if self.handle.state != "ready":  # a warm model's load time is 0, not the check's
            loading = time.perf_counter()
            await self.manager.ensure_loaded(self.handle)
            self.timing.load_s = time.perf_counter() - loading
        async with self.handle.limiter.slot():
            # the model may have been unloaded while this request waited for its slot
            self.handle.check_ready()
            self.handle.touch()
            self.timing.prompt_started = time.perf_counter()
            deadline = Deadline(self.handle.timeout_s)
            requests = self.plan.requests(self.handle)
            first_of_prompt = self._count_prompts(requests)
            key = self._cache_key(requests)
            cache = self.policy.cache
            stored = None if key is None or cache is None else await cache.lookup(key)
            if stored is not None:
                self.usage.prompt_tokens = 0  # nothing ran: nothing to count
                self.usage.response_cache = "hit"
                self.timing.ttft_s = time.perf_counter() - self.timing.started
                for index, delta in stored:
                    yield index, self._restored(index, delta)
                return
            sent: list[Event] = []
            for index, req in enumerate(requests):
                parser = self.plan.parser(self.handle)
                cut = None if self.policy.limits is None else LimitCut(self.policy.limits)
                spec = req.thought
                splitter = ThoughtSplitter(spec) if spec is not None else None
                stream = deadline.bound(self.handle.generator().generate(req))
                async for delta in _cut(stream, cut) if cut is not None else stream:
                    self._account(index in first_of_prompt, delta)
                    if splitter is not None:
                        delta = self._split(splitter, delta)
                    if spec is not None and spec.drop:
                        delta = dataclasses.replace(delta, reasoning="")
                    if parser is not None:
                        delta = _parsed(parser, delta)
                    if self.policy.masker is not None:
                        delta = self._masked(index, delta)
                    if len(delta.tool_calls) > 1:
                        delta = dataclasses.replace(delta, tool_calls=one_per_call(delta))
                    if key is not None:
                        sent.append((index, delta))
                    yield index, self._restored(index, delta)
            if key is not None and cache is not None:
                await cache.store(key, tuple(sent))  # only a call run to its end gets here

    def _cache_key(self, requests: list[GenerationRequest]) -> bytes | None:
        """The response cache key of a deterministic call (None: not cacheable; the policy has
        no cache for a call whose replies may hold tool calls)."""
        if self.policy.cache is None or self.policy.limits is not None:
            return None  # a cut depends on more than the requests (and on time)
        if not all(is_deterministic(r.params, tools=bool(r.tools)) for r in requests):
            return None
        self.usage.response_cache = "miss"
        return request_key(self.policy.cache_scope, self.model, requests)

    def _count_prompts(self, requests: list[GenerationRequest]) -> set[int]:
        """Count each distinct prompt once, as OpenAI does; the indices that count."""
        first_of_prompt: set[int] = set()
        seen: set[str] = set()
        for index, req in enumerate(requests):
            key = req.prompt if req.messages is None else "\0messages"
            if key not in seen:
                seen.add(key)
                first_of_prompt.add(index)
                self.usage.prompt_tokens += len(req.prompt_tokens)
            self.prompts.append(req.prompt)
        return first_of_prompt

    def _split(self, splitter: ThoughtSplitter, delta: Delta) -> Delta:
        """The delta's text split into its thought and its answer; the tokens of a delta that
        is all thought (or ends inside it) count as reasoning tokens."""
        thinking = splitter.thinking
        thought, answer = splitter.feed(delta.text)
        if delta.finish_reason is not None:
            more_thought, more_answer = splitter.finish()
            thought, answer = thought + more_thought, answer + more_answer
        if splitter.thinking or (thinking and not answer):
            self.usage.reasoning_tokens += delta.tokens
        return dataclasses.replace(delta, text=answer, reasoning=delta.reasoning + thought)

    def _account(self, counts_prompt: bool, delta: Delta) -> None:
        self.usage.completion_tokens += delta.tokens
        now = time.perf_counter()
        if self.timing.ttft_s is None and (delta.text or delta.tokens):
            self.timing.ttft_s = now - self.timing.started
            self.timing.first_token = now
        if delta.finish_reason is not None:
            self.timing.finished = now
        if delta.prompt_tokens is not None and counts_prompt:
            self.usage.prompt_tokens += delta.prompt_tokens
        if delta.cached_tokens is not None and counts_prompt:
            self.usage.cached_tokens += delta.cached_tokens
        if delta.reasoning_tokens is not None:
            self.usage.reasoning_tokens += delta.reasoning_tokens
        if delta.draft_tokens is not None:
            self.usage.draft_tokens = (self.usage.draft_tokens or 0) + delta.draft_tokens
            self.usage.accepted_tokens += delta.accepted_tokens or 0

    def _masked(self, index: int, delta: Delta) -> Delta:
        assert self.policy.masker is not None
        return _rewritten(self.policy.masker, index, delta)

    def _restored(self, index: int, delta: Delta) -> Delta:
        restorer = self.policy.restorer
        return delta if restorer is None else _rewritten(restorer, index, delta)

    def tokens(self, text: str) -> list[int] | None:
        """``text`` as the model's token ids; None for a model without a local tokenizer."""
        tokenizer = self.handle.tokenizer()
        return tokenizer.tokenize(text) if tokenizer is not None else None

    async def collect(self) -> Result:
        """Run every choice to its end."""
        texts = [""] * self.n_choices
        reasons: list[str | None] = [None] * self.n_choices
        stops: list[str | None] = [None] * self.n_choices
        calls: list[list[ToolCall]] = [[] for _ in range(self.n_choices)]
        logprobs: list[list[TokenLogprob]] = [[] for _ in range(self.n_choices)]
        reasonings = [""] * self.n_choices
        async for index, delta in self.events():
            texts[index] += delta.text
            reasonings[index] += delta.reasoning
            for piece in delta.tool_calls:
                add_call_delta(calls[index], piece)
            logprobs[index] += delta.logprobs
            if delta.finish_reason is not None:
                reasons[index] = delta.finish_reason
                stops[index] = delta.stop_sequence
        return Result(texts, reasons, stops, calls, logprobs, reasonings)


async def _cut(stream: AsyncGenerator[Delta, None], cut: LimitCut) -> AsyncIterator[Delta]:
    """``stream`` until ``cut`` ends it: the last delta then says ``length`` (llama-server's
    ``limit``) and the backend's generation is closed, which stops it."""
    async with aclosing(stream):
        async for delta in stream:
            text, done = cut.feed(delta.text)
            if done and delta.finish_reason is None:
                yield dataclasses.replace(delta, text=text, finish_reason="length")
                return
            yield dataclasses.replace(delta, text=text) if done else delta
            if delta.finish_reason is not None:
                return


def _rewritten(out: OutputStreams, index: int, delta: Delta) -> Delta:
    """The delta with its content, its thought and its tool calls' arguments rewritten by
    ``out`` (masked, or placeholders restored), one stateful stream each, so a value split
    across pieces is still seen whole."""
    text = out.feed(index, delta.text)
    # the thought has a stream of its own (a key unlike a call's)
    reasoning = out.feed(("thought", index), delta.reasoning) if delta.reasoning else ""
    calls = [
        dataclasses.replace(piece, arguments=out.feed((index, piece.index), piece.arguments))
        for piece in delta.tool_calls
    ]
    calls = [piece for piece in calls if piece.id is not None or piece.arguments]
    if delta.finish_reason is not None:
        text += out.flush(index)
        calls += [ToolCallDelta(i, arguments=rest) for i, rest in out.flush_calls(index) if rest]
        reasoning += out.flush(("thought", index))
    return dataclasses.replace(delta, text=text, tool_calls=tuple(calls), reasoning=reasoning)


def _parsed(parser: ToolStream | ForcedCalls, delta: Delta) -> Delta:
    """A delta with its text split into content and tool calls; the last one says
    ``tool_calls`` when the reply ended by itself after making calls."""
    text, calls = parser.feed(delta.text)
    reason = delta.finish_reason
    if reason is not None:
        tail, more = parser.finish()
        text, calls = text + tail, calls + more
        if reason == "stop" and parser.called:
            reason = "tool_calls"
    return dataclasses.replace(
        delta, text=text, tool_calls=(*delta.tool_calls, *calls), finish_reason=reason
    )
