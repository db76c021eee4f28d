"""The documents' contracts against real servers and the real default model: seed 001's paths
with the official openai package, seed 002's /chat wrap, seed 004's error bodies in Korean and
its fallback, on a model llama.cpp really fails to load."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmserver.config.settings import default_model_path
from support import RunningServer, run_server, sse_events

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m"
WRAP = "[QUESTION]\n{}\n[/QUESTION]\n\n[ANSWER]\n"
FALLBACK = "잠시 후 다시 시도해 주세요."


def _broken_gguf(tmp_path: Path) -> str:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 64 + b"not a model")
    return str(path)


def _wait_states(server: RunningServer, expected: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log()
        try:
            models = httpx.get(f"{server.url}/", timeout=5).json()["models"]
            states = {m["id"]: m["state"] for m in models}
        except httpx.HTTPError:
            pass
        if states == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"states {states}, expected {expected}")


def _post(server: RunningServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


@pytest.fixture(scope="module")
def korean_wrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default model with the wrap and Korean details, and a model that fails to load."""
    tmp = tmp_path_factory.mktemp("korean-wrap")
    config = {
        "models": [
            {"id": MODEL, "backend": "llamacpp", "path": str(default_model_path())},
            {"id": "broken", "backend": "llamacpp", "path": _broken_gguf(tmp)},
        ],
        "chat_prompt_format": "wrap",
        "error_language": "ko",
    }
    with run_server(tmp, config, wait=False) as server:
        _wait_states(server, {MODEL: "ready", "broken": "failed"})
        yield server


def test_seed_001_paths_with_the_openai_package(default_server: RunningServer) -> None:
    theirs = openai.OpenAI(base_url=f"{default_server.url}/api/v1", api_key="-", max_retries=0)
    ours = openai.OpenAI(base_url=default_server.base_url, api_key="-", max_retries=0)
    messages: Any = [{"role": "user", "content": "Name a colour."}]
    chats = [
        c.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
        for c in (ours, theirs)
    ]
    assert chats[0].choices[0].message.content == chats[1].choices[0].message.content
    # the same counts (the second call may find more of its prompt in the prefix cache)
    assert chats[0].usage is not None
    assert chats[1].usage is not None
    assert chats[0].usage.prompt_tokens == chats[1].usage.prompt_tokens
    assert chats[0].usage.completion_tokens == chats[1].usage.completion_tokens
    stream = theirs.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=8, temperature=0, stream=True
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == chats[0].choices[0].message.content
    texts = [
        c.completions.create(model=MODEL, prompt="The sky is", max_tokens=6, temperature=0)
        for c in (ours, theirs)
    ]
    assert texts[0].choices[0].text == texts[1].choices[0].text
    with pytest.raises(openai.NotFoundError):
        theirs.chat.completions.create(model="nope", messages=messages)
    listed = httpx.get(f"{default_server.url}/models", timeout=10).json()
    assert listed == httpx.get(f"{default_server.base_url}/models", timeout=10).json()
    embedders = [m["id"] for m in listed["data"] if m["id"] != MODEL]
    if embedders:  # the default embedding model, when its package is installed
        vectors = [
            c.embeddings.create(model=embedders[0], input="a red house").data[0].embedding
            for c in (ours, theirs)
        ]
        assert vectors[0] == vectors[1]


def test_chat_wrap_on_the_real_model(korean_wrap: RunningServer) -> None:
    # seed 002's own client: requests.post(f"{BASE_URL}/chat", json=...).json()["generated"]
    body = {"prompt": "What is 2+2?", "max_tokens": 8, "temperature": 0}
    resp = _post(korean_wrap, "/chat", body)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["prompt"] == "What is 2+2?"
    assert data["full_text"] == WRAP.format("What is 2+2?") + data["generated"]
    # /generate continues the prompt as given; the OpenAI surface keeps the chat template
    generated = _post(korean_wrap, "/generate", {"prompt": "2+2=", "max_tokens": 3}).json()
    assert generated["full_text"] == "2+2=" + generated["generated"]


@pytest.mark.parametrize("path", ["/generate", "/chat"])
def test_korean_detail_for_a_model_that_failed_to_load(
    korean_wrap: RunningServer, path: str
) -> None:
    resp = _post(korean_wrap, path, {"prompt": "hi", "model": "broken"})
    assert resp.status_code == 503
    data = resp.json()
    assert data["detail"] == "LLM 모델 로딩 실패"
    assert data["error"]["code"] == "model_not_ready"
    assert data["error"]["message"].startswith("model load failed")
    refused = _post(korean_wrap, path, {"prompt": ""})
    assert refused.status_code == 400
    assert refused.json()["detail"] == refused.json()["error"]["message"]
    # the OpenAI surface keeps OpenAI's shape
    chat = {"model": "broken", "messages": [{"role": "user", "content": "hi"}]}
    openai_body = _post(korean_wrap, "/v1/chat/completions", chat).json()
    assert set(openai_body) == {"error"}


def test_fallback_on_every_simple_endpoint(tmp_path: Path) -> None:
    config = {
        # a second model that loads keeps the server up (one whose every model failed exits)
        "models": [
            {"id": "broken", "backend": "llamacpp", "path": _broken_gguf(tmp_path)},
            {"id": "spare", "backend": "fake"},
        ],
        "default_model": "broken",
        "fallback_response": FALLBACK,
    }
    with run_server(tmp_path, config, wait=False) as server:
        _wait_states(server, {"broken": "failed", "spare": "ready"})
        for path, body in [
            ("/infer", {"query": "hello"}),
            ("/generate", {"prompt": "hello"}),
            ("/chat", {"prompt": "hello"}),
        ]:
            resp = _post(server, path, body)
            assert resp.status_code == 200, resp.text
            assert resp.headers["x-llmserver-fallback"] == "true"
            text = resp.json().get("generated_text") or resp.json()["generated"]
            assert text == FALLBACK
        with httpx.stream(
            "POST", f"{server.url}/infer/stream", json={"query": "hello"}, timeout=60
        ) as r:
            assert r.status_code == 200
            assert r.headers["x-llmserver-fallback"] == "true"
            events = sse_events(r.read().decode())
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["generated_text"] == FALLBACK
        assert _post(server, "/v1/completions", {"prompt": "hi"}).status_code == 503
        log = server.log()
    for endpoint in ("infer", "generate", "chat"):
        assert f"{endpoint} failed, answering with the fallback response: model load failed" in log
