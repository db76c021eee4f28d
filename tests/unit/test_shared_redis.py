"""Redis shared by two gateways (issue 29; in-process apps on one real throw-away
redis-server, the fake model): one rate-limit budget across both, the exact-response cache of
one answering the other, and Redis stopped while serving: a clear 503 where the counters are
needed, the cache just misses, and both come back with Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis as redis_client
from fastapi.testclient import TestClient

from llmserver.backends.base import Delta, TokenLogprob, ToolCallDelta, TopLogprob
from llmserver.core.shared_cache import decode, encode
from support import fake_model, fake_settings, open_client
from support.state_servers import Redis

CHAT = "/v1/chat/completions"


@pytest.fixture
def url(redis: Redis) -> str:
    client = redis_client.Redis.from_url(redis.url)
    client.flushdb()
    client.close()
    return redis.url


def ask(client: TestClient, content: str = "the same question", **body: Any) -> Any:
    payload = {
        "model": "fake",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        **body,
    }
    return client.post(CHAT, json=payload)


def test_one_request_budget_across_two_gateways(url: str) -> None:
    settings = fake_settings(rate_limit_requests_per_minute=3, rate_limit_storage=url)
    with open_client(settings) as a, open_client(settings) as b:
        assert [ask(a).status_code, ask(b).status_code, ask(a).status_code] == [200, 200, 200]
        refused = ask(b)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert ask(a).status_code == 429
        assert b.get("/health").status_code == 200


def test_a_cached_answer_of_one_gateway_is_a_hit_on_the_other(url: str) -> None:
    model = fake_model("fake", response_cache={"max_entries": 8, "ttl_s": 60})
    settings = fake_settings(model, response_cache_redis=url)
    with open_client(settings) as a, open_client(settings) as b:
        first = ask(a).json()
        assert first["usage"]["completion_tokens"] > 0
        again = ask(b).json()
        assert again["choices"] == first["choices"]
        assert again["usage"]["total_tokens"] == 0  # nothing ran on B


def test_cached_events_keep_logprobs_tool_calls_and_counts_through_json() -> None:
    top = (TopLogprob("a", b"a", -0.5), TopLogprob("\xe2", b"\xe2", -1.5))
    events = (
        (0, Delta("a", 1, None, None, (), (TokenLogprob("a", b"a", -0.5, top),))),
        (1, Delta("", 0, "stop", 12, (ToolCallDelta(0, "call_1", "f", "{}"),), (), "END", 3)),
    )
    assert decode(encode(events)) == events


def test_redis_stopped_while_serving_is_a_clear_503_only_where_needed(
    redis: Redis, url: str
) -> None:
    limited = fake_settings(rate_limit_requests_per_minute=100, rate_limit_storage=url)
    model = fake_model("fake", response_cache={"max_entries": 8, "ttl_s": 60})
    cached = fake_settings(model, response_cache_redis=url)
    with open_client(limited) as a, open_client(cached) as b:
        assert ask(a).status_code == 200
        assert a.get("/ready").json()["shared_state"] == {"redis": "ok"}
        redis.stop()
        try:
            ready = a.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["shared_state"] == {"redis": "unreachable"}
            down = ask(a)
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "store_unavailable"
            assert "rate-limit counters" in down.json()["error"]["message"]
            assert a.get("/health").status_code == 200
            answer = ask(b, "asked while Redis is down")  # the cache misses; the model answers
            assert answer.status_code == 200
            assert answer.json()["usage"]["completion_tokens"] > 0
        finally:
            redis.start()
        for _ in range(500):
            if ask(a).status_code == 200:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the rate limiter never reached Redis again")
        ask(b, "asked once Redis is back")  # stored once the cache is tried again
