"""The Ollama upstream (``backend: ollama``) against responses recorded from Ollama's
documentation: what it sends (num_ctx, keep_alive, format, Ollama's defaults left alone), the
counts it takes from Ollama, embeddings, warm-up, health and failover."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import fake_settings, free_port, open_client
from support.fake import replica_states
from support.mock_upstream import Upstream, recorded_ollama, serve

RECORDING: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "ollama_recorded.json").read_text()
)
USER = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture
def ollama() -> Iterator[Upstream]:
    with serve(recorded_ollama(RECORDING)) as upstream:
        yield upstream


@contextlib.contextmanager
def _running(entry: dict[str, Any], wait: bool = True) -> Iterator[TestClient]:
    """The app serving ``entry``; with ``wait``, once it is ready."""
    settings = fake_settings(entry)
    if wait:
        with open_client(settings) as c:
            yield c
    else:  # an unready app, whose server errors raise in the test
        with open_client(settings, until=None, raise_server_exceptions=True) as c:
            yield c


def _client(url: str | list[str], wait: bool = True, **extra: Any) -> Any:
    return _running({"id": "llama3.2", "backend": "ollama", "url": url, **extra}, wait)


def _base(upstream: Upstream) -> str:
    return f"http://127.0.0.1:{upstream.port}"


def test_chat_sends_num_ctx_and_keep_alive_and_takes_ollamas_counts(ollama: Upstream) -> None:
    with _client(_base(ollama), context_size=8192, keep_alive="30m") as c:
        warm = ollama.requests[0]
        assert warm["path"] == "/api/generate"
        assert warm["body"] == {"model": "llama3.2", "keep_alive": "30m",
                                "options": {"num_ctx": 8192}}  # fmt: skip
        r = c.post("/v1/chat/completions", json={"model": "llama3.2", "messages": USER})
    assert r.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "The sky is blue."
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 26
    assert body["usage"]["completion_tokens"] == 3
    sent = ollama.requests[-1]
    assert sent["path"] == "/api/chat"
    assert sent["body"]["messages"] == USER
    assert sent["body"]["stream"] is True
    assert sent["body"]["keep_alive"] == "30m"
    # only num_ctx: Ollama's own sampling defaults stay in force
    assert sent["body"]["options"] == {"num_ctx": 8192}


def test_request_sampling_and_json_mode_are_sent_as_ollama_options(ollama: Upstream) -> None:
    with _client(_base(ollama)) as c:
        c.post(
            "/v1/chat/completions",
            json={
                "model": "llama3.2",
                "messages": USER,
                "temperature": 0.3,
                "max_tokens": 50,
                "seed": 4,
                "stop": ["\n"],
                "response_format": {"type": "json_object"},
            },
        )
        sent = ollama.requests[-1]["body"]
        assert sent["options"] == {"temperature": 0.3, "num_predict": 50, "seed": 4,
                                   "stop": ["\n"]}  # fmt: skip
        assert sent["format"] == "json"
        assert "keep_alive" not in sent
        schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        c.post(
            "/v1/chat/completions",
            json={"model": "llama3.2", "messages": USER, "response_format": fmt},
        )
        assert ollama.requests[-1]["body"]["format"] == schema


def test_a_completion_is_a_raw_generate(ollama: Upstream) -> None:
    with _client(_base(ollama)) as c:
        r = c.post("/v1/completions", json={"model": "llama3.2", "prompt": "Once"})
    body = r.json()
    assert body["choices"][0]["text"] == "The end"
    assert body["choices"][0]["finish_reason"] == "length"
    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == (5, 2)
    sent = ollama.requests[-1]
    assert sent["path"] == "/api/generate"
    assert sent["body"]["raw"] is True
    assert sent["body"]["prompt"] == "Once"


def test_the_ollama_surface_relays_through_an_ollama_upstream(ollama: Upstream) -> None:
    with _client(_base(ollama), context_size=4096) as c:
        r = c.post("/api/chat", json={"model": "llama3.2", "messages": USER, "stream": False})
    body = r.json()
    assert body["message"]["content"] == "The sky is blue."
    assert (body["prompt_eval_count"], body["eval_count"]) == (26, 3)


def test_embeddings_go_through_api_embed(ollama: Upstream) -> None:
    with serve(recorded_ollama(RECORDING, model="all-minilm")) as up:
        entry = {"id": "all-minilm", "backend": "ollama", "url": _base(up), "embedding": True}
        with _running(entry) as c:
            r = c.post("/v1/embeddings", json={"model": "all-minilm", "input": ["a", "b"]})
            api = c.post("/api/embed", json={"model": "all-minilm", "input": "a"})
        assert up.requests[0]["path"] == "/api/embed"  # the warm-up
        assert up.requests[-2]["body"]["input"] == ["a", "b"]
    body = r.json()
    assert r.status_code == 200
    assert [len(d["embedding"]) for d in body["data"]] == [10, 10]
    assert body["usage"]["prompt_tokens"] == 8
    assert api.json()["embeddings"] == [RECORDING["embed"]["embeddings"][0]]


def test_a_model_ollama_does_not_have_fails_to_load_with_ollamas_reason(
    ollama: Upstream,
) -> None:
    entry = {"id": "missing", "backend": "ollama", "url": _base(ollama)}
    with _running(entry, wait=False) as c:
        for _ in range(200):
            states = c.get("/ready").json()["models"]
            if states["missing"] != "loading":
                break
        assert states["missing"] == "failed"
        r = c.post("/v1/chat/completions", json={"model": "missing", "messages": USER})
    assert r.status_code == 503
    assert "model 'missing' not found" in r.json()["error"]["message"]


def test_an_unreachable_ollama_makes_ready_503_and_requests_503() -> None:
    with _client(f"http://127.0.0.1:{free_port()}", wait=False) as c:
        ready = c.get("/ready")
        r = c.post("/v1/chat/completions", json={"model": "llama3.2", "messages": USER})
        api = c.post("/api/chat", json={"model": "llama3.2", "messages": USER})
    assert ready.status_code == 503
    assert ready.json()["models"]["llama3.2"] == "unhealthy"
    assert r.status_code == 503
    assert api.status_code == 503
    assert set(api.json()) == {"error"}


def test_a_down_replica_is_skipped(ollama: Upstream) -> None:
    with _client([f"http://127.0.0.1:{free_port()}", _base(ollama)]) as c:
        for _ in range(3):
            r = c.post("/v1/chat/completions", json={"model": "llama3.2", "messages": USER})
            assert r.status_code == 200
        states = replica_states(c, "llama3.2")
    assert list(states.values()) == [False, True]


def test_a_v1_url_is_taken_as_the_ollama_base(ollama: Upstream) -> None:
    with _client(_base(ollama) + "/v1") as c:
        r = c.post("/v1/chat/completions", json={"model": "llama3.2", "messages": USER})
    assert r.status_code == 200
