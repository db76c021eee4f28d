"""Token log probabilities from raw logits (the llama.cpp engine's arithmetic)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmserver.backends.llamacpp_logprobs import MAX_TOP, token_logprob


def piece(token: int) -> bytes:
    return f"t{token}".encode()


def test_logprobs_are_a_log_softmax_with_sorted_alternatives() -> None:
    logits = np.array([1.0, 3.0, 2.0, -1.0, 3.0], dtype=np.float32)
    lp = token_logprob(logits, 2, 3, piece)
    logz = math.log(sum(math.exp(x) for x in logits))
    assert lp.logprob == pytest.approx(2.0 - logz)
    assert (lp.token, lp.bytes) == ("t2", b"t2")
    assert [t.token for t in lp.top] == ["t1", "t4", "t2"]  # ties keep the lower id first
    assert [t.logprob for t in lp.top] == pytest.approx([3 - logz, 3 - logz, 2 - logz])
    assert sum(math.exp(x - logz) for x in logits) == pytest.approx(1.0)


def test_top_is_capped_and_zero_gives_none() -> None:
    logits = np.arange(100, dtype=np.float32)
    assert token_logprob(logits, 5, 0, piece).top == ()
    assert len(token_logprob(logits, 5, 50, piece).top) == MAX_TOP


def test_large_logits_do_not_overflow() -> None:
    logits = np.array([1000.0, 999.0], dtype=np.float32)
    lp = token_logprob(logits, 0, 2, piece)
    assert lp.logprob == pytest.approx(-math.log1p(math.exp(-1)))
