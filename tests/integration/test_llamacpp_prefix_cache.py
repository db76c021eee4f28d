"""The llama.cpp engine's prefix cache, on the real default model.

A request whose prompt shares a prefix with what a free sequence id still holds decodes only the
rest. These tests compare such a request with the same request decoded from scratch by a backend
without the cache: logits within the batching tests' tolerance, greedy text equal. (Without flash
attention, the default, llama.cpp's CPU logits do not depend on how a prompt is split into
batches, so here they come out identical; with flash attention, splitting a prompt differently
moves them by up to about 1, with or without the cache.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import numpy as np
import pytest

from llmserver.backends.base import Delta, GenerationRequest, SamplingParams
from llmserver.backends.llamacpp import LlamaCppBackend
from llmserver.backends.llamacpp_engine import MIN_DECODED, BatchEngine, common_prefix
from llmserver.core.templating import ChatTemplate
from support import started_llamacpp

pytestmark = pytest.mark.integration

SLOTS = 4
LOGIT_TOLERANCE = 0.05  # as in test_llamacpp_batching
INSTRUCTION = (
    "You are a news editor. Read the article below and write a one-sentence summary of it, "
    "then list the people and places it names. Keep the summary short and plain."
)
ARTICLES = [
    "A bakery in the old town opened at dawn and sold out of bread by nine.",
    "The river rose two metres overnight after three days of rain in the hills.",
    "A robot built by students won the regional chess tournament on Sunday.",
]


async def started(**extra: Any) -> LlamaCppBackend:
    return await started_llamacpp(SLOTS, **extra)


@pytest.fixture(scope="module")
async def cached() -> AsyncIterator[LlamaCppBackend]:
    backend = await started()
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
async def fresh() -> AsyncIterator[LlamaCppBackend]:
    backend = await started(prefix_cache=False)
    yield backend
    await backend.close()


def tokens(
    backend: LlamaCppBackend, content: str, history: Sequence[dict[str, str]] = ()
) -> tuple[str, list[int]]:
    fmt = backend.prompt_format()
    template = ChatTemplate(fmt.chat_template, fmt.bos_token, fmt.eos_token)
    prompt = template.render([*history, {"role": "user", "content": content}])
    return prompt, backend.tokenize(prompt)


def request(
    backend: LlamaCppBackend,
    content: str,
    name: str,
    max_tokens: int = 16,
    history: Sequence[dict[str, str]] = (),
    **params: Any,
) -> GenerationRequest:
    prompt, ids = tokens(backend, content, history)
    sampling = SamplingParams(max_tokens=max_tokens, **{"temperature": 0.0, **params})
    return GenerationRequest(name, prompt, ids, sampling)


async def collect(backend: LlamaCppBackend, req: GenerationRequest) -> tuple[str, int, Delta]:
    """(text, generated tokens, last delta)."""
    text, count, last = "", 0, Delta("")
    async for delta in backend.generate(req):
        text += delta.text
        count += delta.tokens
        last = delta
    return text, count, last


def article(i: int) -> str:
    return f"{INSTRUCTION}\n\n{ARTICLES[i]}"


def assert_cache_consistent(backend: LlamaCppBackend) -> None:
    """Every free id's cells are exactly the tokens the engine thinks they are."""
    engine = backend.engine
    assert engine.free_slots == SLOTS
    for seq_id in range(SLOTS):
        assert engine.seq_pos_max(seq_id) == len(engine.cached(seq_id)) - 1


async def clear(backend: LlamaCppBackend) -> None:
    """Overwrite the cache of every id with a short unrelated prompt: four streams that run
    at the same time hold four different ids."""
    streams = [
        backend.generate(request(backend, f"Say {w}.", f"clear{w}", 100, ignore_eos=True))
        for w in "wxyz"[:SLOTS]
    ]
    for stream in streams:
        await anext(stream)
    for stream in streams:
        assert isinstance(stream, AsyncGenerator)  # so it can be closed
        await stream.aclose()


def test_common_prefix() -> None:
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    long = list(range(1000))
    assert common_prefix(long, [*long[:700], -1]) == 700
    assert common_prefix(long, long[:513]) == 513


async def test_reused_prefix_gives_fresh_logits_and_text(
    cached: LlamaCppBackend, fresh: LlamaCppBackend
) -> None:
    seen: dict[tuple[str, int], np.ndarray] = {}

    def hook(name: str, step: int, logits: np.ndarray) -> None:
        seen[(name, step)] = logits

    cached.logits_hook = fresh.logits_hook = hook
    try:
        await clear(cached)
        await collect(cached, request(cached, article(0), "c0"))
        reused = await collect(cached, request(cached, article(1), "c1"))
        alone = await collect(fresh, request(fresh, article(1), "f1"))
    finally:
        cached.logits_hook = fresh.logits_hook = None
    _, a = tokens(cached, article(0))
    _, b = tokens(cached, article(1))
    shared = common_prefix(a, b)
    assert shared > 40  # the template, the instruction
    # exact: the tokens the two prompts share, by the model's tokenizer
    assert reused[2].cached_tokens == shared
    assert alone[2].cached_tokens == 0
    assert reused[:2] == alone[:2]
    for step in range(16):
        x, y = seen[("c1", step)], seen[("f1", step)]
        assert float(np.max(np.abs(x - y))) < LOGIT_TOLERANCE, step
    assert_cache_consistent(cached)
    assert_all_removed(fresh)


def assert_all_removed(backend: LlamaCppBackend) -> None:
    engine = backend.engine
    assert [engine.seq_pos_max(i) for i in range(SLOTS)] == [-1] * SLOTS
    assert [engine.cached(i) for i in range(SLOTS)] == [[]] * SLOTS


async def test_identical_prompt_decodes_its_last_token(
    cached: LlamaCppBackend, fresh: LlamaCppBackend
) -> None:
    req = request(cached, article(2), "same", max_tokens=12)
    once = await collect(cached, req)
    twice = await collect(cached, req)
    alone = await collect(fresh, req)
    # the whole prompt but its last MIN_DECODED tokens (see the engine)
    assert twice[2].cached_tokens == len(req.prompt_tokens) - MIN_DECODED
    assert twice[:2] == once[:2] == alone[:2]
    assert_cache_consistent(cached)


async def test_multi_turn_reuses_the_conversation(
    cached: LlamaCppBackend, fresh: LlamaCppBackend
) -> None:
    await clear(cached)
    history: list[dict[str, str]] = []
    turns = ["Name a colour.", "Name a fruit of that colour.", "Say it again in capitals."]
    prompt_lengths: list[int] = []
    for i, turn in enumerate(turns):
        req = request(cached, turn, f"turn{i}", max_tokens=12, history=history)
        text, _, last = await collect(cached, req)
        alone = await collect(fresh, request(fresh, turn, f"alone{i}", 12, history))
        assert text == alone[0]
        if i:
            # the previous turn's prompt at least (its reply is re-rendered by the template)
            assert last.cached_tokens is not None
            assert last.cached_tokens >= prompt_lengths[-1] - MIN_DECODED
        prompt_lengths.append(len(req.prompt_tokens))
        history += [{"role": "user", "content": turn}, {"role": "assistant", "content": text}]
    assert_cache_consistent(cached)


async def test_reuse_after_stop_length_and_cancel(
    cached: LlamaCppBackend, fresh: LlamaCppBackend
) -> None:
    await clear(cached)
    probe = request(cached, article(0), "probe", max_tokens=20)
    full, _, _ = await collect(fresh, probe)
    words = full.split()
    assert len(words) > 4
    stop = words[3]
    expected = await collect(fresh, request(fresh, article(1), "expected", max_tokens=20))

    async def then_other(first: GenerationRequest) -> tuple[str, int, Delta]:
        await collect(cached, first)
        return await collect(cached, request(cached, article(1), "next", max_tokens=20))

    # after a stop string: the held cells end at the tokens decoded before the stop
    stopped = request(cached, article(0), "stopped", max_tokens=20, stop=(stop,))
    out = await collect(cached, stopped)
    assert out[0] == full[: full.index(stop)]
    assert out[2].finish_reason == "stop"
    assert_cache_consistent(cached)
    after_stop = await collect(cached, request(cached, article(1), "a", max_tokens=20))
    assert after_stop[:2] == expected[:2]
    # after max_tokens
    await clear(cached)
    after_length = await then_other(request(cached, article(0), "len", max_tokens=3))
    assert after_length[:2] == expected[:2]
    assert_cache_consistent(cached)
    # after a cancellation mid-stream
    await clear(cached)
    long = request(cached, article(0), "long", max_tokens=400, ignore_eos=True)
    stream = cached.generate(long)
    assert isinstance(stream, AsyncGenerator)  # so it can be closed
    for _ in range(5):
        await anext(stream)
    await stream.aclose()
    assert_cache_consistent(cached)
    prompt = list(long.prompt_tokens)
    (held,) = [h for h in map(cached.engine.cached, range(SLOTS)) if h[: len(prompt)] == prompt]
    assert len(held) >= len(prompt) + 4  # the prompt and the tokens fed back before the cancel
    again = await collect(cached, request(cached, article(1), "after-cancel", max_tokens=20))
    assert again[:2] == expected[:2]
    assert again[2].cached_tokens is not None
    assert again[2].cached_tokens > 40
    # the same prompt again after a cancellation: its cells hold prompt + some output
    assert (await collect(cached, probe))[0] == full
    assert_cache_consistent(cached)


async def test_refused_partial_removal_falls_back(
    cached: LlamaCppBackend,
    fresh: LlamaCppBackend,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A model whose cache cannot be truncated (recurrent memory): llama.cpp's seq_rm says no to
    a partial removal; the engine clears the id and decodes the whole prompt."""
    engine = cached.engine
    await clear(cached)
    await collect(cached, request(cached, article(0), "before"))
    lib = engine._lib

    class Refusing:
        def __getattr__(self, name: str) -> Any:
            return getattr(lib, name)

        @staticmethod
        def llama_memory_seq_rm(memory: Any, seq_id: int, p0: int, p1: int) -> bool:
            if p0 > 0:
                return False  # what recurrent memory answers for a partial removal
            return bool(lib.llama_memory_seq_rm(memory, seq_id, p0, p1))

    monkeypatch.setattr(engine, "_lib", Refusing())
    monkeypatch.setattr(engine, "_warned_fallback", False)
    before = engine.stats.fallbacks
    with caplog.at_level(logging.WARNING, logger="llmserver.backends.llamacpp"):
        out = await collect(cached, request(cached, article(1), "after"))
    alone = await collect(fresh, request(fresh, article(1), "alone"))
    assert out[2].cached_tokens == 0
    assert out[:2] == alone[:2]
    assert engine.stats.fallbacks == before + 1
    assert any("prefix cache" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    assert_cache_consistent(cached)


async def test_idle_bound_evicts_least_recently_used() -> None:
    backend = await started(prefix_cache_max_idle=1)
    try:
        reqs = [request(backend, f"Say {w}.", f"b{w}", max_tokens=2) for w in "abc"]
        await asyncio.gather(*(collect(backend, r) for r in reqs))
        engine: BatchEngine = backend.engine
        held = [i for i in range(SLOTS) if engine.cached(i)]
        assert len(held) == 1
        assert_cache_consistent(backend)
    finally:
        await backend.close()


async def test_prompts_arriving_together_copy_the_shared_prefix(
    cached: LlamaCppBackend, fresh: LlamaCppBackend
) -> None:
    """Three articles behind one instruction, sent at once: the first decodes the instruction,
    the others wait for it and copy its cells instead of decoding it again."""
    await clear(cached)
    engine = cached.engine
    copies = engine.stats.copies
    reqs = [request(cached, article(i), f"together{i}", max_tokens=12) for i in range(3)]
    together = await asyncio.gather(*(collect(cached, r) for r in reqs))
    alone = [await collect(fresh, request(fresh, article(i), f"solo{i}", 12)) for i in range(3)]
    assert [t[:2] for t in together] == [a[:2] for a in alone]
    first = list(reqs[0].prompt_tokens)
    shared = [common_prefix(first, list(r.prompt_tokens)) for r in reqs[1:]]
    assert min(shared) > 40
    # the first (admitted first) decoded the instruction: its id held only the short prompt
    # clear() left there; the two others took exactly what they share with it from its stream
    cached_tokens = [t[2].cached_tokens or 0 for t in together]
    assert cached_tokens[1:] == shared
    assert cached_tokens[0] < min(shared) - 20
    assert engine.stats.copies == copies + 2
    assert_cache_consistent(cached)
