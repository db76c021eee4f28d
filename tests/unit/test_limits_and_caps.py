"""Rate limits, request caps, body size, the fallback mock and the scheduler's pieces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from limits.storage import storage_from_string

from llmserver.app import create_app
from llmserver.config.model_configs import FakeConfig
from llmserver.config.settings import SettingsError, load_settings
from llmserver.core.scheduling import Deadline, Limiter
from llmserver.errors import InferenceTimeoutError, RateLimitError
from llmserver.http.context import request_context
from llmserver.http.middleware import rate_limit
from llmserver.http.middleware.rate_limit import RateLimits, duration, estimate_tokens
from support import fake_settings, open_client

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER = [{"role": "user", "content": "hi"}]


def error(resp: Any) -> dict[str, Any]:
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.fixture
def limited() -> Iterator[TestClient]:
    """3 requests and 200 tokens per minute."""
    settings = fake_settings(rate_limit_requests_per_minute=3, rate_limit_tokens_per_minute=200)
    with open_client(settings) as c:
        yield c


def test_request_limit_is_429_with_openai_headers(limited: TestClient) -> None:
    first = limited.post(CHAT, json={"messages": USER, "max_tokens": 2})
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "3"
    assert first.headers["x-ratelimit-remaining-requests"] == "2"
    assert first.headers["x-ratelimit-limit-tokens"] == "200"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 200
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    for _ in range(2):
        assert limited.post(CHAT, json={"messages": USER, "max_tokens": 2}).status_code == 200
    refused = limited.post(CHAT, json={"messages": USER, "max_tokens": 2})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    err = error(refused)
    assert err["type"] == "rate_limit_error"
    assert err["code"] == "rate_limit_exceeded"
    assert err["message"].startswith("Rate limit reached for requests per minute: limit 3.")
    # probes are never limited
    assert limited.get("/health").status_code == 200
    assert limited.get("/ready").status_code == 200


def test_token_limit_refusal_uses_no_quota(limited: TestClient) -> None:
    ok = limited.post(CHAT, json={"messages": USER, "max_tokens": 5})
    assert ok.status_code == 200
    used = ok.json()["usage"]["total_tokens"]
    # the charge was reconciled to the real usage
    assert ok.headers["x-ratelimit-remaining-tokens"] != ""
    after = limited.get("/v1/models")
    assert int(after.headers["x-ratelimit-remaining-tokens"]) == 200 - used
    assert after.headers["x-ratelimit-remaining-requests"] == "1"
    big = limited.post(CHAT, json={"messages": USER, "max_tokens": 190})
    assert big.status_code == 429
    assert "tokens per minute" in error(big)["message"]
    # neither the request nor its tokens were charged
    assert big.headers["x-ratelimit-remaining-requests"] == "1"
    assert int(big.headers["x-ratelimit-remaining-tokens"]) == 200 - used


def test_budget_per_key_name_and_override() -> None:
    from llmserver.observability.logs import AccessRecord

    limits = RateLimits(fake_settings(rate_limit_requests_per_minute=5))
    record = AccessRecord(key_name="nas")
    scope: dict[str, Any] = {"client": ("10.0.0.2", 1)}
    context = request_context(scope)
    context.access = record
    budget = limits.budget(scope)
    assert budget is not None
    assert budget.identity == "key:nas"
    assert budget.requests is not None
    assert budget.requests.amount == 5
    assert budget.tokens is None
    context.rate_limits = {"requests_per_minute": 50, "tokens_per_minute": 1000}
    budget = limits.budget(scope)
    assert budget is not None
    assert budget.requests is not None
    assert budget.tokens is not None
    assert (budget.requests.amount, budget.tokens.amount) == (50, 1000)
    context.rate_limits = {"requests_per_minute": None}
    assert limits.budget(scope) is None  # unlimited for this key
    anonymous = limits.budget({"client": ("10.0.0.3", 1), "state": {}})
    assert anonymous is not None
    assert anonymous.identity == "addr:10.0.0.3"


def test_storage_url_goes_to_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = storage_from_string

    def spy(url: str, **options: Any) -> Any:
        seen.append(url)
        return real("async+memory://")

    monkeypatch.setattr(rate_limit, "storage_from_string", spy)
    create_app(fake_settings(rate_limit_storage="redis://10.0.0.5:6379/0"))
    assert seen == ["async+redis://10.0.0.5:6379/0"]


def test_bad_storage_url_stops_startup() -> None:
    with pytest.raises(SettingsError, match="rate_limit_storage"):
        create_app(fake_settings(rate_limit_storage="nosuchscheme://x"))


def test_estimate_and_duration() -> None:
    body = b'{"prompt": ["a", "b"], "max_tokens": 10, "n": 2}'
    assert estimate_tokens(body) == -(-len(body) // 4) + 40
    assert estimate_tokens(b"not json") == 2
    responses = b'{"input": "hi", "max_output_tokens": 30}'
    assert estimate_tokens(responses) == -(-len(responses) // 4) + 30
    assert (duration(0.02), duration(1.5), duration(360)) == ("20ms", "1.5s", "6m0s")


@pytest.mark.parametrize(
    ("path", "patch", "param"),
    [
        (CHAT, {"n": 9}, "n"),
        (CHAT, {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        (CHAT, {"stop": "x" * 257}, "stop"),
        (CHAT, {"stop": ["x" * 257]}, "stop"),
        (COMPLETIONS, {"prompt": ["p"] * 17}, "prompt"),
    ],
)
def test_caps_are_400_with_param(
    client: TestClient, path: str, patch: dict[str, Any], param: str
) -> None:
    base: dict[str, Any] = {"messages": USER} if path == CHAT else {"prompt": "hi"}
    resp = client.post(path, json={**base, **patch})
    assert resp.status_code == 400, resp.text
    err = error(resp)
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"


def test_prompt_list_at_the_cap_is_served(client: TestClient) -> None:
    resp = client.post(COMPLETIONS, json={"prompt": ["p"] * 16, "max_tokens": 1})
    assert resp.status_code == 200
    assert len(resp.json()["choices"]) == 16


def test_body_over_the_limit_is_413() -> None:
    with open_client(fake_settings(max_body_bytes=1000)) as c:
        big = {"messages": [{"role": "user", "content": "x" * 2000}]}
        resp = c.post(CHAT, json=big)
        assert resp.status_code == 413
        assert error(resp) == {
            "message": "Request body too large: the limit is 1000 bytes.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }

        def chunks() -> Iterator[bytes]:
            for _ in range(50):
                yield b"x" * 100

        chunked = c.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        assert c.post(CHAT, json={"messages": USER, "max_tokens": 2}).status_code == 200


def test_fallback_mock_replaces_the_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_FALLBACK_MOCK", "1")
    settings = load_settings({"models": [{"id": "chat", "backend": "fake", "aliases": ["c"]}]})
    assert settings.fallback_mock
    (model,) = settings.models
    assert isinstance(model, FakeConfig)
    assert model.id == "smollm2-135m"
    assert model.aliases == ["chat", "c"]


def test_plain_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_CONCURRENT_INFERENCE", "3")
    monkeypatch.setenv("INFERENCE_TIMEOUT_SEC", "7")
    settings = fake_settings()
    assert (settings.max_concurrent_inference, settings.inference_timeout_s) == (3, 7)


async def test_limiter_is_fifo_and_a_cancelled_waiter_leaves_the_queue() -> None:
    limiter = Limiter(1, 2, None)
    await limiter.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        async with limiter.slot():
            order.append(name)

    quitter = asyncio.create_task(take("quitter"))
    b = asyncio.create_task(take("b"))
    await asyncio.sleep(0)
    assert limiter.waiting == 2
    with pytest.raises(RateLimitError):
        await limiter.acquire()  # queue full
    quitter.cancel()
    await asyncio.sleep(0)
    assert limiter.waiting == 1
    limiter.release()
    await b
    assert order == ["b"]
    assert (limiter.in_use, limiter.waiting) == (0, 0)


async def test_deadline_cancels_the_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            while True:
                await asyncio.sleep(0.01)
                yield 1
        finally:
            closed.set()

    got: list[int] = []

    async def consume() -> None:
        async for item in Deadline(0.1).bound(endless()):
            got.append(item)

    with pytest.raises(InferenceTimeoutError, match=r"timed out after 0\.1 s"):
        await consume()
    assert closed.is_set()
    assert got


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (MemoryError(), "out of memory during inference"),
        (RuntimeError("llama_decode returned 1"), "out of memory during inference"),
        (RuntimeError("CUDA error: out of memory"), "out of memory during inference"),
        (RuntimeError("llama_decode returned -1"), "llama.cpp failed: llama_decode returned -1"),
    ],
)
def test_engine_failures_are_translated_at_the_boundary(exc: Exception, message: str) -> None:
    from llmserver.backends.base import engine_failure

    err = engine_failure("llama.cpp", exc)
    assert err.status == 503
    assert err.message == message


def test_fallback_mock_flag() -> None:
    from llmserver.cli import build_parser, settings_from_args

    args = build_parser().parse_args(["serve", "--fallback-mock", "--max-queue", "3"])
    settings = settings_from_args(args)
    assert settings.fallback_mock
    assert settings.max_queue == 3
    assert isinstance(settings.models[0], FakeConfig)
