"""The upstream backend against aiohttp mock servers: relaying, error mapping, replicas."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from aiohttp import web
from fastapi.testclient import TestClient

from llmserver.config.model_configs import UpstreamConfig, choose_backend
from llmserver.config.settings import load_settings
from support import done_loading, free_port, open_client, sse_events
from support.fake import replica_states
from support.mock_upstream import endless, failing, instant, reporting, serve

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "one two three"}]


def upstream_model(urls: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"id": "up", "url": urls, "probe_interval_s": 0.05, **extra}


@contextmanager
def proxy(*models: dict[str, Any], **settings: Any) -> Iterator[TestClient]:
    """Our app in front of upstream models; waits until none is loading."""
    settings_ = load_settings({"models": list(models), **settings})
    with open_client(settings_, until=done_loading, raise_server_exceptions=True) as client:
        yield client


def posts(upstream: Any) -> list[dict[str, Any]]:
    """The generation requests an upstream received (not its health probes)."""
    return [r for r in upstream.requests if r.get("body") is not None or "path" in r]


def test_chat_relayed_with_usage_and_our_model_id() -> None:
    with serve(instant()) as up, proxy(upstream_model(up.base_url)) as client:
        resp = client.post(CHAT, json={"model": "up", "messages": USER, "max_tokens": 5})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model"] == "up"
        assert body["choices"][0]["message"]["content"] == "tok " * 5
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
        sent = up.requests[-1]["body"]
        assert sent["messages"] == USER
        assert sent["model"] == "up"
        assert sent["stream"] is True
        assert sent["stream_options"] == {"include_usage": True}
        assert "top_k" not in sent  # non-OpenAI extras only when asked for


def test_chat_stream_relayed_chunk_by_chunk() -> None:
    with serve(instant()) as up, proxy(upstream_model(up.base_url)) as client:
        body = {
            "model": "up",
            "messages": USER,
            "max_tokens": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        resp = client.post(CHAT, json=body)
        assert resp.status_code == 200
        events = sse_events(resp.text)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        texts = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
        assert texts.count("tok ") == 4
        assert "".join(texts) == "tok " * 4
        assert chunks[-1]["usage"] == {
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "total_tokens": 7,
        }


def test_completion_and_sampling_sent_upstream() -> None:
    model = upstream_model("", upstream_model="llama3.2:1b", context_size=8192)
    model["headers"] = {"X-Team": "blue"}
    with serve(instant()) as up:
        model["url"] = up.base_url
        with proxy(model) as client:
            req = {
                "model": "up",
                "prompt": "a b",
                "max_tokens": 3,
                "temperature": 0,
                "seed": 7,
                "stop": ["x"],
                "top_k": 5,
            }
            resp = client.post("/v1/completions", json=req)
            assert resp.status_code == 200, resp.text
            assert resp.json()["choices"][0]["text"] == "tok " * 3
            sent = up.requests[-1]
            assert sent["headers"]["X-Team"] == "blue"
            body = sent["body"]
            assert body["model"] == "llama3.2:1b"
            assert body["prompt"] == "a b"
            assert (body["temperature"], body["seed"], body["stop"]) == (0, 7, ["x"])
            assert body["top_k"] == 5
            assert body["options"] == {"num_ctx": 8192}


def test_api_key_from_environment_is_sent_and_kept_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-very-secret")
    with serve(instant()) as up:
        model = upstream_model(up.base_url, api_key_env="TEST_UPSTREAM_KEY")
        config = UpstreamConfig.model_validate(model)
        assert "sk-very-secret" not in repr(config) + config.model_dump_json()
        with proxy(model) as client:
            client.post(CHAT, json={"model": "up", "messages": USER, "max_tokens": 1})
        assert up.requests[-1]["headers"]["Authorization"] == "Bearer sk-very-secret"


@pytest.mark.parametrize(
    ("status", "upstream_body", "want_status", "want_code"),
    [
        (400, {"error": {"message": "bad stop", "type": "invalid_request_error",
                         "param": "stop", "code": "bad"}}, 400, "bad"),
        (404, {"error": "model 'x' not found"}, 404, None),
        (429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, 429, None),
        (500, {"error": {"message": "CUDA out of memory"}}, 502, "upstream_error"),
        (503, {"error": {"message": "loading"}}, 502, "upstream_error"),
    ],
)  # fmt: skip
def test_upstream_errors_mapped(
    status: int, upstream_body: Any, want_status: int, want_code: str | None
) -> None:
    with serve(failing(status, upstream_body)) as up, proxy(upstream_model(up.base_url)) as c:
        resp = c.post(CHAT, json={"model": "up", "messages": USER})
        assert resp.status_code == want_status
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["code"] == want_code
        upstream_message = upstream_body["error"]
        if isinstance(upstream_message, dict):
            upstream_message = upstream_message["message"]
        if status < 500:  # about the client's request: kept
            assert upstream_message in err["message"]
        else:  # about the upstream: logged, never echoed
            assert upstream_message not in err["message"]
            assert err["message"] == f"upstream error {status}"
        if status == 400:
            assert (err["param"], err["type"]) == ("stop", "invalid_request_error")


def test_unreachable_upstream_is_503() -> None:
    with proxy(upstream_model(f"http://127.0.0.1:{free_port()}/v1")) as client:
        assert client.get("/v1/models").json()["data"][0]["state"] == "ready"
        for stream in (False, True):
            resp = client.post(CHAT, json={"model": "up", "messages": USER, "stream": stream})
            assert resp.status_code == 503
            err = resp.json()["error"]
            assert err["code"] == "upstream_unavailable"
            assert err["type"] == "server_error"


def test_requests_go_to_least_busy_replica() -> None:
    with (
        serve(instant(delay_ms=60)) as a,
        serve(instant(delay_ms=60)) as b,
        proxy(upstream_model([a.base_url, b.base_url])) as client,
    ):
        body = {"model": "up", "messages": USER, "max_tokens": 5}
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: client.post(CHAT, json=body).status_code, "abcd"))
        assert codes == [200] * 4
        assert (len(posts(a)), len(posts(b))) == (2, 2)


def test_down_replica_is_skipped_then_probed_back() -> None:
    port = free_port()
    with serve(instant()) as live:
        dead_url = f"http://127.0.0.1:{port}/v1"
        with proxy(upstream_model([dead_url, live.base_url])) as client:
            body = {"model": "up", "messages": USER, "max_tokens": 2}
            for _ in range(3):
                assert client.post(CHAT, json=body).status_code == 200
            assert replica_states(client, "up") == {dead_url: False, live.base_url: True}
            with serve(instant(), port=port) as revived:
                deadline = time.monotonic() + 5
                while not replica_states(client, "up")[dead_url]:
                    assert time.monotonic() < deadline, "replica never probed back up"
                    time.sleep(0.02)
                for _ in range(4):
                    assert client.post(CHAT, json=body).status_code == 200
                assert posts(revived), "the revived replica got no requests"


def test_failing_replica_retried_on_another_before_any_output() -> None:
    with (
        serve(failing(503, {"error": "overloaded"})) as bad,
        serve(instant()) as good,
        proxy(upstream_model([bad.base_url, good.base_url])) as client,
    ):
        resp = client.post(CHAT, json={"model": "up", "messages": USER, "max_tokens": 2})
        assert resp.status_code == 200
        assert len(bad.requests) == 1
        assert replica_states(client, "up")[bad.base_url] is False


def test_backend_choice_when_omitted(tmp_path: Any) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert choose_backend({"path": str(gguf)}) == "llamacpp"
    assert choose_backend({"url": "https://ollama.lan:11434/v1"}) == "upstream"
    assert choose_backend({"url": ["http://a/v1", "http://b/v1"]}) == "upstream"
    assert choose_backend({"path": str(tmp_path)}) == "transformers"  # no vLLM here
    assert choose_backend({"path": "HuggingFaceTB/SmolLM2-135M-Instruct"}) == "transformers"
    settings = load_settings(
        {"models": [{"id": "g", "path": str(gguf)}, {"id": "u", "url": "http://x:1/v1"}]}
    )
    assert [m.backend for m in settings.models] == ["llamacpp", "upstream"]
    other = tmp_path / "weights.bin"  # not .gguf: automatic choice would say transformers
    other.write_bytes(b"GGUF")
    explicit = load_settings({"models": [{"id": "l", "backend": "llamacpp", "path": str(other)}]})
    assert explicit.models[0].backend == "llamacpp"


async def test_stream_is_relayed_as_it_arrives_not_buffered() -> None:
    from llmserver.backends.base import GenerationRequest, SamplingParams
    from llmserver.backends.upstream import UpstreamBackend

    with serve(instant(delay_ms=150)) as up:
        backend = UpstreamBackend(UpstreamConfig.model_validate(upstream_model(up.base_url)))
        await backend.start()
        try:
            request = GenerationRequest("r", "", (), SamplingParams(max_tokens=10), messages=USER)
            started = time.monotonic()
            arrivals = [time.monotonic() - started async for _ in backend.generate(request)]
        finally:
            await backend.close()
    # the upstream takes 12 x 150 ms to finish; the first text must not wait for the end
    assert len(arrivals) == 11
    assert arrivals[0] < arrivals[-1] - 1.0


async def test_consumer_leaving_closes_the_upstream_request() -> None:
    from llmserver.backends.base import GenerationRequest, SamplingParams
    from llmserver.backends.upstream import UpstreamBackend

    with serve(endless()) as up:
        backend = UpstreamBackend(UpstreamConfig.model_validate(upstream_model(up.base_url)))
        await backend.start()
        try:
            request = GenerationRequest("r", "", (), SamplingParams(max_tokens=0), messages=USER)
            stream = backend.generate(request)
            assert isinstance(stream, AsyncGenerator)  # so it can be closed
            for _ in range(3):
                assert (await anext(stream)).text == "x"
            await stream.aclose()  # what a client disconnect does to the generation
            deadline = time.monotonic() + 3
            while not any(r.get("cut") for r in up.requests):
                assert time.monotonic() < deadline, "upstream kept streaming to nobody"
                await asyncio.sleep(0.02)
            assert backend.replica_states() == {up.base_url: True}  # not the replica's fault
        finally:
            await backend.close()


def test_upstream_that_stops_answering_is_503_in_our_shape() -> None:

    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", hang)
    with serve(app) as up, proxy(upstream_model(up.base_url, read_timeout_s=0.3)) as client:
        resp = client.post(CHAT, json={"model": "up", "messages": USER})
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -5, "completion_tokens": -1},
        {"prompt_tokens": 2.5, "completion_tokens": "many"},
        {"prompt_tokens": 10**12, "completion_tokens": 10**9},
        {"prompt_tokens": 3, "completion_tokens": 5_000},
    ],
    ids=["negative", "not-integers", "absurd", "more-tokens-than-text"],
)
def test_upstream_usage_that_is_not_credible_is_counted_here(
    usage: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with serve(reporting(usage)) as up, proxy(upstream_model(up.base_url)) as client:
        resp = client.post(CHAT, json={"model": "up", "messages": USER})
        assert resp.status_code == 200, resp.text
        got = resp.json()["usage"]
        assert got["completion_tokens"] == 1  # one text piece arrived
        assert 0 < got["prompt_tokens"] < 1000
        assert got["total_tokens"] == got["prompt_tokens"] + got["completion_tokens"]
        assert "not credible" in caplog.text
        # the server keeps serving, and its metrics still render
        assert client.get("/metrics").status_code == 200
        assert client.post(CHAT, json={"model": "up", "messages": USER}).status_code == 200


def test_credible_upstream_usage_is_kept() -> None:
    usage = {"prompt_tokens": 17, "completion_tokens": 2}
    with serve(reporting(usage)) as up, proxy(upstream_model(up.base_url)) as client:
        got = client.post(CHAT, json={"model": "up", "messages": USER}).json()["usage"]
        assert (got["prompt_tokens"], got["completion_tokens"]) == (17, 2)


def test_unreachable_upstream_makes_ready_503_until_it_answers() -> None:
    port = free_port()
    with proxy(upstream_model(f"http://127.0.0.1:{port}/v1", probe_interval_s=0.1)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["models"] == {"up": "unhealthy"}
        with serve(instant(), port=port):
            deadline = time.monotonic() + 5
            while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.get("/ready").json() == {"status": "ready", "models": {"up": "ready"}}
