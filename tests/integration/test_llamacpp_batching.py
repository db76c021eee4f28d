"""Continuous batching in the llama.cpp backend, on the real default model.

The backend is driven directly (no HTTP) so the tests can look inside: the next-token logits of
every sequence and the KV cache of every sequence id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import numpy as np
import pytest

from llmserver.backends.base import GenerationRequest, JsonConstraint, SamplingParams
from llmserver.backends.llamacpp import LlamaCppBackend
from llmserver.backends.llamacpp_engine import ABORTABLE_CHUNK
from llmserver.core.templating import ChatTemplate
from support import started_llamacpp

pytestmark = pytest.mark.integration

SLOTS = 4
TOPICS = ["a cat", "the sea", "a robot", "bread", "winter", "a castle"]
# batched matrix products are not bit-identical to single-token ones; the model's logits span
# about 30 units, so this is a tight bound on "the same computation"
LOGIT_TOLERANCE = 0.05
CAT_JSON = "Give me a JSON object describing a cat."


async def started(**extra: Any) -> LlamaCppBackend:
    return await started_llamacpp(SLOTS, **extra)


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[LlamaCppBackend]:
    backend = await started()
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
async def fa_backend() -> AsyncIterator[LlamaCppBackend]:
    """With flash attention every query row is computed alone: batch-invariant arithmetic."""
    backend = await started(flash_attn=True)
    yield backend
    await backend.close()


def request(
    backend: LlamaCppBackend,
    topic: str,
    name: str,
    max_tokens: int = 16,
    constraint: JsonConstraint | None = None,
    **params: Any,
) -> GenerationRequest:
    """A chat prompt asking for a story about ``topic`` (or ``topic`` itself when it ends in .)."""
    content = topic if topic.endswith(".") else f"Write a short story about {topic}."
    fmt = backend.prompt_format()
    template = ChatTemplate(fmt.chat_template, fmt.bos_token, fmt.eos_token)
    prompt = template.render([{"role": "user", "content": content}])
    sampling = SamplingParams(max_tokens=max_tokens, **{"temperature": 0.0, **params})
    return GenerationRequest(name, prompt, backend.tokenize(prompt), sampling, constraint)


async def collect(backend: LlamaCppBackend, req: GenerationRequest) -> tuple[str, int, str | None]:
    """(text, generated tokens, finish reason)."""
    text, tokens, finish = "", 0, None
    async for delta in backend.generate(req):
        text += delta.text
        tokens += delta.tokens
        finish = delta.finish_reason
    return text, tokens, finish


def assert_all_free(backend: LlamaCppBackend) -> None:
    engine = backend.engine
    assert engine.free_slots == SLOTS
    # a free id holds exactly the cells of the tokens its prefix cache remembers (none without
    # the cache); nothing a finished request held is left unaccounted for
    held = [len(engine.cached(i)) - 1 for i in range(SLOTS)]
    assert [engine.seq_pos_max(i) for i in range(SLOTS)] == held


async def test_interleaved_logits_match_solo(backend: LlamaCppBackend) -> None:
    seen: dict[tuple[str, int], np.ndarray] = {}
    backend.logits_hook = lambda name, step, logits: seen.__setitem__((name, step), logits)
    try:
        topics = TOPICS[:3]
        solo = [await collect(backend, request(backend, t, f"s{i}")) for i, t in enumerate(topics)]

        async def staggered(i: int, topic: str) -> tuple[str, int, str | None]:
            # later sequences join while earlier ones decode: prefill and decode share steps
            await asyncio.sleep(0.05 * i)
            return await collect(backend, request(backend, topic, f"mix{i}"))

        mixed = await asyncio.gather(*(staggered(i, t) for i, t in enumerate(topics)))
    finally:
        backend.logits_hook = None
    assert [m[0] for m in mixed] == [s[0] for s in solo]
    for i in range(len(topics)):
        steps = [step for (name, step) in seen if name == f"s{i}"]
        assert len(steps) == 16
        for step in steps:
            a, b = seen[(f"s{i}", step)], seen[(f"mix{i}", step)]
            assert float(np.max(np.abs(a - b))) < LOGIT_TOLERANCE, (i, step)
            assert int(np.argmax(a)) == int(np.argmax(b))
    assert_all_free(backend)


async def test_concurrent_greedy_equals_one_at_a_time(fa_backend: LlamaCppBackend) -> None:
    # Without flash attention the attention product of a many-token batch rounds differently
    # from a one-token one, so a greedy near-tie can flip (logits agree within tolerance, see
    # above). With it, text is identical whatever else runs.
    backend = fa_backend
    reqs = [request(backend, t, f"g{i}", max_tokens=24) for i, t in enumerate(TOPICS)]
    alone = [await collect(backend, r) for r in reqs]
    # more requests than sequences: the extra ones wait inside the engine for a free id
    together = await asyncio.gather(*(collect(backend, r) for r in reqs))
    assert together == alone
    assert_all_free(backend)


async def test_seed_gives_same_text_under_concurrency(backend: LlamaCppBackend) -> None:
    def seeded(name: str, seed: int, topic: str = "a dragon") -> GenerationRequest:
        return request(backend, topic, name, max_tokens=24, temperature=0.9, seed=seed)

    solo = await collect(backend, seeded("s", 7))
    runs = await asyncio.gather(
        collect(backend, seeded("a", 7)),
        collect(backend, seeded("b", 123, "a ship")),
        collect(backend, seeded("c", 7)),
        collect(backend, seeded("d", 999, "a forest")),
    )
    assert runs[0] == solo
    assert runs[2] == solo


async def test_stop_and_max_tokens_are_per_sequence(backend: LlamaCppBackend) -> None:
    full, _, _ = await collect(backend, request(backend, "the moon", "full", max_tokens=30))
    words = full.split()
    assert len(words) > 4
    stop = words[3]
    short, cut, plain = await asyncio.gather(
        collect(backend, request(backend, "a cat", "short", max_tokens=3)),
        collect(backend, request(backend, "the moon", "cut", max_tokens=30, stop=(stop,))),
        collect(backend, request(backend, "the moon", "plain", max_tokens=30)),
    )
    assert short[1:] == (3, "length")
    assert cut[0] == full[: full.index(stop)]
    assert cut[2] == "stop"
    assert plain[0] == full
    assert plain[1] == 30
    assert_all_free(backend)


async def test_grammar_is_per_sequence(backend: LlamaCppBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    free_alone = await collect(backend, request(backend, "a cat", "free", max_tokens=20))
    obj, person, free = await asyncio.gather(
        collect(backend, request(backend, CAT_JSON, "j", 300, JsonConstraint())),
        collect(backend, request(backend, "Invent a person.", "p", 200, JsonConstraint(schema))),
        collect(backend, request(backend, "a cat", "free", max_tokens=20)),
    )
    assert isinstance(json.loads(obj[0]), dict)
    data = json.loads(person[0])
    assert isinstance(data["name"], str)
    assert isinstance(data["age"], int)
    assert free == free_alone
    assert_all_free(backend)


async def test_cancelled_sequence_frees_slot_and_cache(backend: LlamaCppBackend) -> None:
    long = request(backend, "a long journey", "long", max_tokens=500, ignore_eos=True)
    other = request(backend, "a cat", "other", max_tokens=40, ignore_eos=True)
    stream = backend.generate(long)
    assert isinstance(stream, AsyncGenerator)  # so it can be closed
    got = [await anext(stream) for _ in range(3)]
    assert all(d.finish_reason is None for d in got)
    neighbour = asyncio.create_task(collect(backend, other))
    busy = SLOTS - backend.engine.free_slots
    assert busy >= 1
    await stream.aclose()  # what a client disconnect does to the generation
    assert backend.engine.free_slots >= SLOTS - 1  # only the neighbour may still hold one
    assert (await neighbour)[1:] == (40, "length")
    assert_all_free(backend)


async def test_cancelled_task_frees_slot_and_cache(backend: LlamaCppBackend) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        req = request(backend, "the sky", "t", max_tokens=500, ignore_eos=True)
        async for _ in backend.generate(req):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_all_free(backend)


async def test_cancel_during_a_long_prompt_aborts_the_step_and_spares_the_neighbour(
    fa_backend: LlamaCppBackend,
) -> None:
    backend, engine = fa_backend, fa_backend.engine
    neighbour = request(backend, "a cat", "n", max_tokens=40, ignore_eos=True)
    alone = await collect(backend, neighbour)
    long = request(backend, "lighthouse keeper " * 440 + ".", "long", max_tokens=5)
    assert len(long.prompt_tokens) > 2 * ABORTABLE_CHUNK
    aborted = engine.aborted_steps
    first = asyncio.Event()

    async def neighbour_run() -> tuple[str, int, str | None]:
        text, tokens, finish = "", 0, None
        async for delta in backend.generate(neighbour):
            first.set()
            text, tokens, finish = text + delta.text, tokens + delta.tokens, delta.finish_reason
        return text, tokens, finish

    beside = asyncio.create_task(neighbour_run())
    await first.wait()
    doomed = asyncio.create_task(collect(backend, long))
    # the engine thread sets this, so there is no event to wait on: poll
    while not engine.in_abortable_step:  # noqa: ASYNC110 (the long prompt's chunk is decoding)
        await asyncio.sleep(0.001)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert engine.aborted_steps == aborted + 1  # stopped inside llama_decode, not after it
    # the neighbour's token in the aborted step was decoded again: its text is unchanged
    assert await beside == alone
    assert_all_free(backend)
