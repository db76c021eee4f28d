"""The exact-response cache on its own: keys, determinism, TTL, LRU bound."""

from __future__ import annotations

import dataclasses

import pytest

from llmserver.backends.base import GenerationRequest, JsonConstraint, SamplingParams
from llmserver.core.response_cache import ResponseCache, is_deterministic, request_key

GREEDY = SamplingParams(max_tokens=16, temperature=0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def req(
    prompt: str = "hello", params: SamplingParams = GREEDY, **extra: object
) -> GenerationRequest:
    return GenerationRequest("rid", prompt, [1, 2, 3], params, **extra)  # type: ignore[arg-type]


def test_hit_and_miss() -> None:
    cache: ResponseCache[str] = ResponseCache(4, 60.0)
    key = request_key("alice", "m", [req()])
    assert cache.get(key) is None
    cache.put(key, "answer")
    assert cache.get(key) == "answer"
    assert (cache.counts.hits, cache.counts.misses) == (1, 1)


def test_ttl_expiry() -> None:
    clock = Clock()
    cache: ResponseCache[str] = ResponseCache(4, 30.0, clock=clock)
    key = request_key(None, "m", [req()])
    cache.put(key, "answer")
    clock.now += 29.9
    assert cache.get(key) == "answer"
    clock.now += 0.2
    assert cache.get(key) is None
    assert len(cache) == 0


def test_least_recently_used_goes_first() -> None:
    cache: ResponseCache[int] = ResponseCache(2, 60.0)
    a, b, c = (request_key(None, "m", [req(p)]) for p in "abc")
    cache.put(a, 1)
    cache.put(b, 2)
    assert cache.get(a) == 1  # a is now the most recent
    cache.put(c, 3)
    assert cache.get(b) is None
    assert cache.get(a) == 1
    assert cache.get(c) == 3


def test_no_hit_across_keys_models_prompts_or_sampling() -> None:
    base = request_key("alice", "m", [req()])
    assert request_key("alice", "m", [req()]) == base
    # the request id is not part of the key
    assert request_key("alice", "m", [dataclasses.replace(req(), request_id="other")]) == base
    different = [
        request_key("bob", "m", [req()]),
        request_key(None, "m", [req()]),
        request_key("alice", "m2", [req()]),
        request_key("alice", "m", [req("hello!")]),
        request_key("alice", "m", [req(params=dataclasses.replace(GREEDY, max_tokens=17))]),
        request_key("alice", "m", [req(params=dataclasses.replace(GREEDY, stop=("x",)))]),
        request_key("alice", "m", [req(constraint=JsonConstraint())]),
        request_key("alice", "m", [req(), req()]),  # n=2
        request_key("alice", "m", [req()], extra={"kind": "completion"}),
    ]
    assert base not in different
    assert len(set(different)) == len(different)


def test_only_deterministic_requests_qualify() -> None:
    assert is_deterministic(GREEDY)
    assert is_deterministic(SamplingParams(max_tokens=8, temperature=0.8, seed=3))
    assert not is_deterministic(SamplingParams(max_tokens=8, temperature=0.8))
    assert not is_deterministic(GREEDY, tools=True)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        ResponseCache(0, 1.0)
    with pytest.raises(ValueError, match="max_entries"):
        ResponseCache(1, 0.0)
