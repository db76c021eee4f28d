"""Log probabilities of sampled tokens, from the raw next-token logits of the batch engine.

They are the model's own distribution (a log-softmax of the logits), before temperature,
penalties or a grammar reshape it, as OpenAI and vLLM report them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmserver.backends.base import TokenLogprob, TopLogprob

#: OpenAI's largest ``top_logprobs``
MAX_TOP = 20


def token_logprob(logits: Any, token: int, top: int, piece: Callable[[int], bytes]) -> TokenLogprob:
    """The chosen ``token``'s log probability and the ``top`` most likely tokens."""
    import numpy as np

    values = logits.astype(np.float64)
    peak = float(values.max())
    logz = peak + float(np.log(np.exp(values - peak).sum()))
    logprobs = values - logz
    alternatives: tuple[TopLogprob, ...] = ()
    if top > 0:
        k = min(top, MAX_TOP, len(values))
        best = np.argpartition(-logprobs, k - 1)[:k]
        best = best[np.argsort(-logprobs[best], kind="stable")]
        alternatives = tuple(_top(int(t), float(logprobs[t]), piece) for t in best)
    raw = piece(token)
    return TokenLogprob(_text(raw), raw, float(logprobs[token]), alternatives)


def _top(token: int, logprob: float, piece: Callable[[int], bytes]) -> TopLogprob:
    raw = piece(token)
    return TopLogprob(_text(raw), raw, logprob)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
