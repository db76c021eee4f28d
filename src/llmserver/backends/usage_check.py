"""Token counts reported by an upstream engine, checked before anything counts them.

An upstream is another program: its usage numbers feed the access log, the metrics, the usage
database and the per-key token budget, so a negative, fractional or absurd count must not get
through. A count that is not credible is replaced by our own estimate, and the log says so.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("llmserver.backends.upstream")

#: no single request is near this many tokens
ABSURD_TOKENS = 10_000_000
#: a token is at least a byte of text, give or take special tokens that show no text
SLACK_TOKENS = 64


def _count(value: object) -> int | None:
    """``value`` as a token count when it is a non-negative integer (JSON ``3.0`` included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value < ABSURD_TOKENS:
        return value
    return None


def credible_usage(
    reported: dict[str, object], text_bytes: int, chunks: int, request_bytes: int
) -> tuple[int, int]:
    """``(prompt_tokens, completion_tokens)`` from an upstream's report, or our estimates where
    a number is missing or not credible: the text pieces received for the completion, a quarter
    of the request's bytes for the prompt."""
    prompt = _count(reported.get("prompt_tokens"))
    completion = _count(reported.get("completion_tokens"))
    if completion is not None and completion > text_bytes + chunks + SLACK_TOKENS:
        completion = None  # more tokens than the text they produced could hold
    if prompt is not None and prompt > request_bytes + SLACK_TOKENS:
        prompt = None
    if reported and (prompt is None or completion is None):
        logger.warning(
            "upstream reported usage that is not credible (%s); counting it here instead",
            {k: reported.get(k) for k in ("prompt_tokens", "completion_tokens")},
        )
    return (
        prompt if prompt is not None else request_bytes // 4,
        completion if completion is not None else chunks,
    )
