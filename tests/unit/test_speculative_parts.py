"""The parts of speculative decoding that need no model: prompt lookup, the odds a sequence's
guesses are kept, the measured step costs, and the config's rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llmserver.backends.llamacpp_spec import (
    FIRST_THRESHOLD,
    PROBE_EVERY,
    DraftState,
    NgramLookup,
    StepCosts,
)
from llmserver.config.model_configs import LlamaCppConfig, SpeculativeConfig


def lookup(tokens: list[int], min_match: int = 2, prompt_len: int | None = None) -> NgramLookup:
    split = len(tokens) if prompt_len is None else prompt_len
    index = NgramLookup(min_match)
    index.sync(tokens[:split], tokens[split:])
    return index


def test_lookup_guesses_what_followed_the_recurring_tail() -> None:
    #            0  1  2  3  4  5  6  7  8
    index = lookup([5, 6, 7, 8, 9, 1, 2, 5, 6])
    assert index.guess(3) == [7, 8, 9]
    assert index.guess(10) == [7, 8, 9, 1, 2, 5, 6]


def test_lookup_prefers_the_longest_match_then_the_latest() -> None:
    # tail (3, 4): the bigram occurs twice; the trigram (2, 3, 4) only before 10
    index = lookup([2, 3, 4, 10, 1, 3, 4, 20, 2, 3, 4])
    assert index.guess(1) == [10]
    # tail (3, 4) alone: the latest occurrence wins
    assert lookup([3, 4, 10, 3, 4, 20, 9, 3, 4]).guess(1) == [20]


def test_lookup_never_matches_the_tail_itself() -> None:
    assert lookup([1, 2, 3, 4]).guess(4) == []
    assert lookup([7, 7]).guess(2) == []


def test_lookup_grows_with_the_output() -> None:
    index = NgramLookup(2)
    prompt = [1, 2, 3, 4, 5]
    output: list[int] = []
    index.sync(prompt, output)
    assert index.guess(2) == []
    output += [9, 1, 2]
    index.sync(prompt, output)
    assert index.guess(2) == [3, 4]
    assert index.tokens == prompt + output


def test_min_match_refuses_shorter_runs() -> None:
    assert lookup([1, 2, 9, 8, 1, 2], min_match=3).guess(2) == []
    assert lookup([0, 1, 2, 9, 8, 0, 1, 2], min_match=3).guess(2) == [9, 8]


def test_guesses_lengthen_while_kept_and_shorten_after_a_miss() -> None:
    state = DraftState(ceiling=8)
    first = state.limit(0.4)
    for _ in range(6):
        state.record(4, 4)
    assert state.limit(0.4) > first
    assert state.limit(0.4) <= 8
    for _ in range(12):
        state.record(4, 0)
    assert state.limit(0.4) == 0  # too poor to pay for its rows
    assert (state.drafted, state.accepted) == (72, 24)


def test_a_sequence_with_poor_odds_still_probes_now_and_then() -> None:
    state = DraftState(ceiling=8)
    for _ in range(10):
        state.record(2, 0)
    limits = [state.limit(0.4) for _ in range(PROBE_EVERY * 2)]
    assert limits.count(1) == 2
    assert set(limits) == {0, 1}


def test_free_rows_mean_guessing_the_most() -> None:
    assert DraftState(ceiling=6).limit(0.0) == 6


def test_step_costs_are_measured_from_steps() -> None:
    costs = StepCosts()
    assert costs.line() is None
    assert costs.threshold(1) == FIRST_THRESHOLD
    # a CPU: 10 ms a step plus 6 ms a row
    for rows in [1, 2, 4, 1, 8, 3, 1, 5] * 4:
        costs.observe(rows, 0.010 + 0.006 * rows)
    line = costs.line()
    assert line is not None
    assert line[0] == pytest.approx(0.010, abs=1e-6)
    assert line[1] == pytest.approx(0.006, abs=1e-6)
    one, four = costs.threshold(1), costs.threshold(4)
    assert one == pytest.approx(0.006 / 0.016, rel=1e-3)
    assert four > one  # more sequences in a step: a guess must be likelier to pay
    costs.observe_guessing(4, 0.024)  # a draft model: 6 ms a guessed token on top
    assert costs.threshold(1) == pytest.approx(0.012 / 0.016, rel=1e-3)


def test_a_gpu_like_step_makes_guessing_nearly_free() -> None:
    costs = StepCosts()
    for rows in [1, 4, 9, 2, 16] * 4:
        costs.observe(rows, 0.020 + 0.00001 * rows)
    assert costs.threshold(1) < 0.01


def test_steps_of_one_size_give_no_line() -> None:
    costs = StepCosts()
    for _ in range(20):
        costs.observe(1, 0.015)
    assert costs.line() is None


def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_draft_method_needs_a_draft_model_and_only_it_has_one(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="draft_model"):
        SpeculativeConfig(method="draft")
    with pytest.raises(ValidationError, match="draft_model"):
        SpeculativeConfig(method="ngram", draft_model=gguf(tmp_path))
    with pytest.raises(ValidationError, match="not found"):
        SpeculativeConfig(method="draft", draft_model=tmp_path / "missing.gguf")
    assert SpeculativeConfig(method="draft", draft_model=gguf(tmp_path)).enabled


def test_speculation_turns_flash_attention_on_and_refuses_it_off(tmp_path: Path) -> None:
    path = gguf(tmp_path)
    spec = {"method": "ngram"}
    assert LlamaCppConfig(id="m", path=path, speculative=spec).uses_flash_attn
    assert not LlamaCppConfig(id="m", path=path, speculative={"method": "off"}).uses_flash_attn
    with pytest.raises(ValidationError, match="flash_attn"):
        LlamaCppConfig(id="m", path=path, speculative=spec, flash_attn=False)
    with pytest.raises(ValidationError, match="embedding"):
        LlamaCppConfig(id="m", path=path, speculative=spec, embedding=True)
