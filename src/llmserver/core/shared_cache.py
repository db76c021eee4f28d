"""The exact-response cache in Redis (``response_cache_redis: redis://...``), shared by every
gateway: a deterministic request answered by one gateway is a cache hit on the others.

The entries are the same as :class:`~llmserver.core.response_cache.ResponseCache`'s (a call's
events, under the same request key), written as JSON (never pickled: whoever can write to the
Redis must not be able to run code in a gateway) with Redis's own expiry (``ttl_s``); the size
bound is Redis's ``maxmemory`` policy rather than ``max_entries``. Redis is a cache here and
never a reason to fail a request: an unreachable Redis is a miss, and the answer is generated.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import orjson

from llmserver.backends.base import Delta, TokenLogprob, ToolCallDelta, TopLogprob
from llmserver.core.response_cache import CacheCounts

logger = logging.getLogger("llmserver.cache")

Event = tuple[int, Delta]
#: after a failure, how long the cache is left alone before it is tried again
RETRY_S = 5.0


def _token(token: str, raw: bytes, logprob: float) -> list[Any]:
    return [token, base64.b64encode(raw).decode(), logprob]


def _fields(t: TopLogprob) -> tuple[str, bytes, float]:
    return t.token, t.bytes, t.logprob


def encode(events: tuple[Event, ...]) -> bytes:
    """A call's events as JSON."""
    out = []
    for index, d in events:
        logprobs = [
            [*_token(lp.token, lp.bytes, lp.logprob), [_token(*_fields(t)) for t in lp.top]]
            for lp in d.logprobs
        ]
        calls = [[c.index, c.id, c.name, c.arguments] for c in d.tool_calls]
        delta = [d.text, d.tokens, d.finish_reason, d.prompt_tokens, calls, logprobs]
        out.append([index, [*delta, d.stop_sequence, d.cached_tokens]])
    return orjson.dumps(out)


def decode(data: bytes) -> tuple[Event, ...]:
    """The events :func:`encode` wrote."""
    events = []
    for index, d in orjson.loads(data):
        text, tokens, finish, prompt, calls, logprobs, stop, cached = d
        events.append(
            (
                int(index),
                Delta(
                    text,
                    tokens,
                    finish,
                    prompt,
                    tuple(ToolCallDelta(*c) for c in calls),
                    tuple(
                        TokenLogprob(
                            tok,
                            base64.b64decode(raw),
                            lp,
                            tuple(TopLogprob(t, base64.b64decode(b), p) for t, b, p in top),
                        )
                        for tok, raw, lp, top in logprobs
                    ),
                    stop,
                    cached,
                ),
            )
        )
    return tuple(events)


class RedisResponseCache:
    """One model's response cache in Redis, under ``llmserver:rc:<model>:``."""

    def __init__(self, client: Any, model: str, ttl_s: float) -> None:
        self.client = client
        self.prefix = f"llmserver:rc:{model}:"
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.counts = CacheCounts()
        self._down_until = 0.0

    def _usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, what: str, exc: Exception) -> None:
        self._down_until = time.monotonic() + RETRY_S
        logger.warning("response cache in Redis unreachable (%s): %s", what, exc)

    async def lookup(self, key: bytes) -> tuple[Event, ...] | None:
        """The stored events, or None (also when Redis cannot be reached)."""
        data = None
        if self._usable():
            try:
                data = await self.client.get(self.prefix + key.hex())
            except Exception as exc:  # a cache: a miss, never an error
                self._failed("read", exc)
        if data is None:
            self.counts.misses += 1
            return None
        self.counts.hits += 1
        return decode(data)

    async def store(self, key: bytes, value: tuple[Event, ...]) -> None:
        """Store the events for ``ttl_s`` (skipped when Redis cannot be reached)."""
        if not self._usable():
            return
        try:
            await self.client.set(self.prefix + key.hex(), encode(value), px=self.ttl_ms)
        except Exception as exc:
            self._failed("write", exc)
