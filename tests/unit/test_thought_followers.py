"""Engines following a thought: the budget feeds the end marker's tokens after exactly
``budget`` thought tokens, the constraint starts where the thought ends, and a reply that
would end inside the thought gets the end marker instead (llama.cpp's follower; the
transformers logits processor, driven here by a toy vocabulary and generate()'s call
pattern)."""

from __future__ import annotations

from typing import Any

import pytest

from llmserver.backends.thought import ThoughtFollower, ThoughtSpec

#: a toy vocabulary: words, the end marker in two pieces, and a JSON brace
VOCAB = ["Hmm", " let", " me", " think", "</", "think>", "{", "}", "\n"]
END = [4, 5]


def _piece(token: int) -> bytes:
    return VOCAB[token].encode()


def test_the_budget_feeds_the_end_marker_after_exactly_budget_thought_tokens() -> None:
    follower = ThoughtFollower(ThoughtSpec(open=True, budget=3), END)
    out: list[int] = []
    for step in range(8):
        token = follower.forced()
        if token is None:
            token = [0, 1, 2, 3, 1, 2, 6, 7][step] if not follower.done else 6
        out.append(token)
        follower.observe(_piece(token))
    assert out[:5] == [0, 1, 2, 4, 5]  # three thought tokens, then "</" "think>"
    assert follower.done
    assert follower.thought == 4  # the marker's first piece is read inside the thought


def test_a_thought_the_model_ends_itself_needs_no_marker() -> None:
    follower = ThoughtFollower(ThoughtSpec(open=True, budget=10), END)
    for token in (0, 4, 5):
        assert follower.forced() is None
        follower.observe(_piece(token))
    assert follower.done
    assert follower.instead_of_end() is None


def test_an_end_of_reply_inside_the_thought_becomes_the_end_marker_once() -> None:
    follower = ThoughtFollower(ThoughtSpec(open=True), END)
    follower.observe(_piece(0))
    assert follower.instead_of_end() == 4
    assert follower.forced() == 5
    assert follower.instead_of_end() is None  # once only


def test_a_zero_budget_ends_an_opened_thought_at_once() -> None:
    follower = ThoughtFollower(ThoughtSpec(open=True, budget=0), END)
    assert [follower.forced(), follower.forced()] == END


def test_the_transformers_processor_forces_the_marker_then_hands_over_to_the_grammar() -> None:
    torch = pytest.importorskip("torch")
    from llmserver.backends.transformers_thought import ThoughtProcessor

    grammar_calls: list[int] = []

    def grammar(input_ids: Any, scores: Any) -> Any:
        grammar_calls.append(int(input_ids.shape[1]))
        allowed = torch.full_like(scores, float("-inf"))
        allowed[..., 6] = 0.0  # "{" only
        return allowed

    follower = ThoughtFollower(ThoughtSpec(open=True, budget=2), END)
    processor = ThoughtProcessor(follower, _piece, grammar)  # type: ignore[arg-type]
    ids = torch.tensor([[8, 8]])  # the prompt
    picked = []
    for _ in range(6):
        scores = torch.zeros((1, len(VOCAB)))
        scores[0, 1] = 5.0  # the model would go on with " let"
        token = int(torch.argmax(processor(ids, scores), dim=-1))
        picked.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    assert picked == [1, 1, 4, 5, 6, 6]
    assert grammar_calls[0] == 6  # from the first token after the marker on


def test_the_transformers_processor_turns_an_end_inside_the_thought_into_the_marker() -> None:
    torch = pytest.importorskip("torch")
    from llmserver.backends.transformers_thought import ThoughtProcessor

    eos = len(VOCAB)  # one more id: the end-of-text token
    follower = ThoughtFollower(ThoughtSpec(open=True), END)
    processor = ThoughtProcessor(follower, lambda t: b"" if t == eos else _piece(t), None, {eos})
    ids = torch.tensor([[8]])
    picked = []
    for _ in range(4):
        scores = torch.zeros((1, len(VOCAB) + 1))
        scores[0, eos] = 9.0  # the model wants to stop at once
        token = int(torch.argmax(processor(ids, scores), dim=-1))
        picked.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    # the end's chance went to "</", then "think>" was fed; after the thought, EOS is free
    assert picked == [4, 5, eos, eos]
    assert follower.done
