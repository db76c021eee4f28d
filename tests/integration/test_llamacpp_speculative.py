"""Speculative decoding on the default GGUF model: the output is the output without it.

Each backend here guesses: by prompt lookup, or with the default model as its own draft model
(the same vocabulary, so its guesses are often right). The reference is the same model without
speculation and with flash attention, which speculative decoding turns on. The prompts hit the
lookup (the answer repeats the prompt) and miss it (a story). ``always_guess`` makes every step
guess as much as it may, whatever the measured costs say, so that verification runs on every
step, not only where guessing pays on this machine.

llama.cpp's prompt evaluation is not batch-invariant (prompts evaluated in one step with other
prompts get slightly different cells than alone), so the module's backends keep no prefix
cache: a prompt is evaluated the same way in the reference and in the speculating backend
whatever ran before. The prefix cache test has a pair of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from llmserver.backends.base import (
    Delta,
    GenerationRequest,
    JsonConstraint,
    ModelLoadError,
    SamplingParams,
)
from llmserver.backends.llamacpp import LlamaCppBackend
from llmserver.backends.llamacpp_spec import StepCosts
from llmserver.config.model_configs import SpeculativeConfig
from llmserver.config.settings import default_model_path
from llmserver.core.templating import ChatTemplate
from support import started_llamacpp
from support.gguf_copy import edited_copy

pytestmark = pytest.mark.integration

SLOTS = 3
REPEAT = (
    'Copy this JSON exactly: {"ticker": "AAPL", "headline": "Apple beats estimates", '
    '"price": 187.5, "tags": ["tech", "earnings"]}'
)
SUMMARY = (
    "Summarise: The council voted to build a new bridge over the river. The mayor said the "
    "bridge will open next summer. The budget for the bridge is ten million."
)
STORY = "Write a short story about a cat."
PROMPTS = [REPEAT, SUMMARY, STORY]


class AlwaysGuess(StepCosts):
    """Step costs that make every guess worth its row."""

    def threshold(self, sequences: int) -> float:
        return 0.0


def always_guess(backend: LlamaCppBackend) -> None:
    speculator = backend.engine.speculator
    assert speculator is not None
    speculator.costs = AlwaysGuess()


@pytest.fixture(scope="module")
async def plain() -> AsyncIterator[LlamaCppBackend]:
    backend = await started_llamacpp(SLOTS, flash_attn=True, prefix_cache=False)
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
async def ngram() -> AsyncIterator[LlamaCppBackend]:
    backend = await started_llamacpp(
        SLOTS, speculative=SpeculativeConfig(method="ngram"), prefix_cache=False
    )
    always_guess(backend)
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
async def draft() -> AsyncIterator[LlamaCppBackend]:
    spec = SpeculativeConfig(method="draft", draft_model=default_model_path(), max_tokens=6)
    backend = await started_llamacpp(SLOTS, speculative=spec, prefix_cache=False)
    always_guess(backend)
    yield backend
    await backend.close()


def request(
    backend: LlamaCppBackend,
    content: str,
    max_tokens: int = 80,
    constraint: JsonConstraint | None = None,
    **params: Any,
) -> GenerationRequest:
    fmt = backend.prompt_format()
    template = ChatTemplate(fmt.chat_template, fmt.bos_token, fmt.eos_token)
    prompt = template.render([{"role": "user", "content": content}])
    sampling = SamplingParams(max_tokens=max_tokens, **{"temperature": 0.0, **params})
    return GenerationRequest("r", prompt, backend.tokenize(prompt), sampling, constraint)


async def run(backend: LlamaCppBackend, req: GenerationRequest) -> tuple[str, Delta]:
    """(text, last delta)."""
    text, last = "", None
    async for delta in backend.generate(req):
        text += delta.text
        last = delta
    assert last is not None
    return text, last


async def same_as_plain(
    plain: LlamaCppBackend, spec: LlamaCppBackend, content: str, **kw: Any
) -> Delta:
    """Generate with and without speculation; assert the same text and ending; the last delta
    of the speculating run."""
    want, want_last = await run(plain, request(plain, content, **kw))
    got, got_last = await run(spec, request(spec, content, **kw))
    assert got == want
    assert (got_last.finish_reason, got_last.stop_sequence) == (
        want_last.finish_reason,
        want_last.stop_sequence,
    )
    assert want_last.draft_tokens is None  # the reference does not speculate
    assert got_last.draft_tokens is not None
    return got_last


@pytest.mark.parametrize("content", PROMPTS)
async def test_prompt_lookup_output_is_the_plain_output(
    plain: LlamaCppBackend, ngram: LlamaCppBackend, content: str
) -> None:
    await same_as_plain(plain, ngram, content)


async def test_prompt_lookup_keeps_guesses_where_the_answer_repeats_the_prompt(
    plain: LlamaCppBackend, ngram: LlamaCppBackend
) -> None:
    last = await same_as_plain(plain, ngram, REPEAT)
    assert last.draft_tokens is not None
    assert last.accepted_tokens is not None
    assert last.accepted_tokens >= 10
    assert last.accepted_tokens <= last.draft_tokens


@pytest.mark.parametrize("content", PROMPTS)
async def test_draft_model_output_is_the_plain_output(
    plain: LlamaCppBackend, draft: LlamaCppBackend, content: str
) -> None:
    last = await same_as_plain(plain, draft, content)
    # the model as its own draft guesses its own greedy tokens: most are kept
    assert last.draft_tokens
    assert last.accepted_tokens
    assert last.accepted_tokens >= last.draft_tokens // 2


@pytest.mark.parametrize("which", ["ngram", "draft"])
async def test_seeded_sampling_is_unchanged_by_speculation(
    plain: LlamaCppBackend, ngram: LlamaCppBackend, draft: LlamaCppBackend, which: str
) -> None:
    """Each emitted token is drawn by the sequence's own chain, one draw per token: the same
    seed gives the same text."""
    spec = ngram if which == "ngram" else draft
    for content in (REPEAT, STORY):
        await same_as_plain(plain, spec, content, temperature=0.8, seed=11)


async def test_stop_string_inside_a_guess_ends_the_reply_there(
    plain: LlamaCppBackend, ngram: LlamaCppBackend
) -> None:
    last = await same_as_plain(plain, ngram, REPEAT, stop=('"price"',))
    assert last.finish_reason == "stop"
    assert last.stop_sequence == '"price"'


async def test_max_tokens_ends_inside_a_run_of_kept_guesses(
    plain: LlamaCppBackend, ngram: LlamaCppBackend
) -> None:
    for limit in (3, 7, 12):
        last = await same_as_plain(plain, ngram, REPEAT, max_tokens=limit)
        assert last.finish_reason == "length"


async def test_json_grammar_output_is_the_plain_output(
    plain: LlamaCppBackend, ngram: LlamaCppBackend, draft: LlamaCppBackend
) -> None:
    schema = {
        "type": "object",
        "properties": {"ticker": {"type": "string"}, "price": {"type": "number"}},
        "required": ["ticker", "price"],
    }
    for spec in (ngram, draft):
        await same_as_plain(plain, spec, REPEAT, constraint=JsonConstraint(schema=schema))


async def test_concurrent_sequences_each_get_the_plain_output(
    plain: LlamaCppBackend, ngram: LlamaCppBackend
) -> None:
    """Flash attention makes a decoding row's logits independent of what else its step
    carries, so sequences guessing beside each other answer as they do beside each other
    without guesses (prompts arriving together are evaluated in the same steps either way)."""
    want = await asyncio.gather(*(run(plain, request(plain, c)) for c in PROMPTS))
    got = await asyncio.gather(*(run(ngram, request(ngram, c)) for c in PROMPTS))
    assert [text for text, _ in got] == [text for text, _ in want]
    assert all(last.draft_tokens is not None for _, last in got)


async def test_prefix_cache_reuse_with_speculation() -> None:
    plain = await started_llamacpp(SLOTS, flash_attn=True)
    ngram = await started_llamacpp(SLOTS, speculative=SpeculativeConfig(method="ngram"))
    always_guess(ngram)
    try:
        first = await same_as_plain(plain, ngram, REPEAT, max_tokens=20)
        again = await same_as_plain(plain, ngram, REPEAT, max_tokens=40)
        assert first.cached_tokens == 0
        assert again.cached_tokens is not None
        assert again.cached_tokens > 0
        await same_as_plain(plain, ngram, SUMMARY)
        assert_cache_holds_only_emitted_tokens(ngram)
    finally:
        await plain.close()
        await ngram.close()


def assert_cache_holds_only_emitted_tokens(backend: LlamaCppBackend) -> None:
    """Each free sequence's cells are exactly the tokens the cache says it holds: no guess
    the model refused is left behind."""
    engine = backend.engine
    for seq_id in range(SLOTS):
        assert engine.seq_pos_max(seq_id) == len(engine.cached(seq_id)) - 1


async def test_cancelled_mid_generation_frees_its_cells_and_the_engine_goes_on(
    plain: LlamaCppBackend, draft: LlamaCppBackend
) -> None:
    stream = cast(AsyncGenerator[Delta], draft.generate(request(draft, REPEAT, max_tokens=200)))
    seen = 0
    async for _delta in stream:
        seen += 1
        if seen == 5:
            break
    await stream.aclose()
    assert draft.engine.free_slots == SLOTS
    assert_cache_holds_only_emitted_tokens(draft)
    await same_as_plain(plain, draft, SUMMARY)


async def test_logprobs_are_the_plain_logprobs(
    plain: LlamaCppBackend, ngram: LlamaCppBackend
) -> None:
    async def logprobs(backend: LlamaCppBackend) -> list[tuple[str, float]]:
        out = []
        async for delta in backend.generate(request(backend, REPEAT, max_tokens=30, logprobs=2)):
            out += [(lp.token, lp.logprob) for lp in delta.logprobs]
        return out

    assert await logprobs(ngram) == await logprobs(plain)


async def test_a_draft_model_with_another_vocabulary_is_refused(tmp_path: Path) -> None:
    other = edited_copy(tmp_path / "other.gguf", tokens={100: "<not-the-same-token>"})
    spec = SpeculativeConfig(method="draft", draft_model=other)
    with pytest.raises(ModelLoadError, match="token 100 differs"):
        await started_llamacpp(1, speculative=spec)
