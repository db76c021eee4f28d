"""/infer, /infer/stream, /generate and /chat against the real default model; keys with the
official openai package."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from llmserver.security.keys import create_key
from support import RunningServer, run_server, sse_events

pytestmark = pytest.mark.integration

EMAIL = "lee.jiwoo@example.co.kr"


def _post(server: RunningServer, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


def _log_line(server: RunningServer, needle: str) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line with {needle!r}")


def test_infer(default_server: RunningServer) -> None:
    body = {"query": f"Say   hello to\n\n{EMAIL} please", "max_length": 12, "temperature": 0}
    resp = _post(default_server, "/infer", body)
    assert resp.status_code == 200
    text = resp.json()["generated_text"]
    assert isinstance(text, str)
    assert text.strip()
    line = _log_line(default_server, 'infer query="Say hello to [EMAIL] please"')
    assert "generated_chars=" in line
    assert "prompt_tokens=" in line
    assert "completion_tokens=" in line
    assert EMAIL not in default_server.log()


def test_infer_several(default_server: RunningServer) -> None:
    body = {"query": "Name a colour.", "max_length": 6, "num_return_sequences": 2, "top_p": 0.9}
    resp = _post(default_server, "/infer", body).json()
    assert len(resp["generated_texts"]) == 2
    assert resp["generated_text"] == resp["generated_texts"][0]


@pytest.mark.parametrize(
    "body", [{}, {"query": ""}, {"query": "x" * 4097}, {"query": "hi", "max_length": 0}]
)
@pytest.mark.parametrize("path", ["/infer", "/infer/stream"])
def test_infer_400(default_server: RunningServer, path: str, body: dict[str, object]) -> None:
    resp = _post(default_server, path, body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] in {"query", "max_length"}


def test_infer_stream(default_server: RunningServer) -> None:
    body = {"query": "Count from one to five.", "max_length": 16, "temperature": 0}
    with httpx.stream("POST", f"{default_server.url}/infer/stream", json=body, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    pieces = [c["text"] for c in chunks if "text" in c]
    assert len(pieces) > 1  # token by token, not one blob
    final = chunks[-1]
    assert final["generated_text"] == "".join(pieces)
    assert final["usage"]["completion_tokens"] >= len(pieces)


def test_generate(default_server: RunningServer) -> None:
    body = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0, "top_k": 1}
    resp = _post(default_server, "/generate", body)
    assert resp.status_code == 200
    data = resp.json()
    assert data["prompt"] == body["prompt"]
    assert data["generated"]
    assert data["full_text"] == data["prompt"] + data["generated"]
    again = _post(default_server, "/generate", {**body, "model": "smollm2-135m"}).json()
    assert again["generated"] == data["generated"]  # greedy: the same text


def test_chat(default_server: RunningServer) -> None:
    body = {"prompt": "What is 2+2?", "max_tokens": 10, "temperature": 0}
    resp = _post(default_server, "/chat", body)
    assert resp.status_code == 200
    data = resp.json()
    assert data["prompt"] == "What is 2+2?"
    assert data["generated"].strip()
    # the prompt went through the model's own chat template as a user turn
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in data["full_text"]
    assert data["full_text"].endswith(data["generated"])


@pytest.mark.parametrize("path", ["/generate", "/chat"])
def test_generate_and_chat_400_404(default_server: RunningServer, path: str) -> None:
    for body, param in [({}, "prompt"), ({"prompt": ""}, "prompt"), ({"prompt": 3}, "prompt")]:
        resp = _post(default_server, path, body)
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == param
    resp = _post(default_server, path, {"prompt": "hi", "max_tokens": -1})
    assert resp.json()["error"]["param"] == "max_tokens"
    resp = _post(default_server, path, {"prompt": "hi", "model": "nope"})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"


def test_keys_with_the_openai_package(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    good = create_key(keys, "script")
    limited = create_key(keys, "nas", models=["other-model"])
    env = {"LLMSERVER_KEYS_FILE": str(keys)}
    with run_server(tmp_path, env=env) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=good, max_retries=0)
        reply = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert reply.usage is not None
        bad = openai.OpenAI(base_url=server.base_url, api_key="llms-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        nas = openai.OpenAI(base_url=server.base_url, api_key=limited, max_retries=0)
        assert [m.id for m in nas.models.list()] == []
        with pytest.raises(openai.PermissionDeniedError):
            nas.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": "hi"}]
            )
        log = server.log()
    assert good not in log
    assert limited not in log
    assert "refused GET /v1/models" in log
