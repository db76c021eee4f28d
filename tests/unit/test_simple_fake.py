"""/infer, /infer/stream, /generate and /chat on the fake backend: input rules, masking,
fail-closed, fallback and the log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.backends.base import GenerationRequest
from llmserver.backends.fake import FakeBackend
from llmserver.privacy import PIIMasker
from llmserver.security.keys import create_key
from support import fake_model, fake_settings, open_client, sse_events

EMAIL = "kim.minsu@example.com"
PHONE = "010-1234-5678"


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every prompt the fake backend is asked to continue (warm-ups left out)."""
    seen: list[str] = []
    original = FakeBackend._reply

    def spy(self: FakeBackend, request: GenerationRequest) -> list[str]:
        if request.request_id != "warmup":
            seen.append(request.prompt)
        return original(self, request)

    monkeypatch.setattr(FakeBackend, "_reply", spy)
    return seen


def _client(
    tmp_path: Path, *models: dict[str, Any], **settings: Any
) -> AbstractContextManager[TestClient]:
    settings.setdefault("keys_file", tmp_path / "keys.json")
    return open_client(fake_settings(*models, **settings))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """A fake model that masks nothing itself, and one with ``mask_pii``."""
    with _client(tmp_path, fake_model("fake"), fake_model("private", mask_pii=True)) as c:
        yield c


def _error(resp: Any, param: str | None) -> None:
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_infer_masks_collapses_and_answers(
    client: TestClient, prompts: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    query = f"  call me   at {PHONE}\n\n or mail\t{EMAIL} please  "
    resp = client.post("/infer", json={"query": query, "max_length": 5})
    assert resp.status_code == 200
    body = resp.json()
    assert body["generated_text"]
    assert "generated_texts" not in body
    assert "call me at [PHONE] or mail [EMAIL] please<|im_end|>" in prompts[0]
    assert PHONE not in prompts[0]
    line = next(r.getMessage() for r in caplog.records if r.name == "llmserver.simple")
    assert line.startswith('infer query="call me at [PHONE] or mail [EMAIL] please"')
    assert "generated_chars=" in line
    assert "prompt_tokens=" in line
    assert "completion_tokens=5" in line
    assert PHONE not in caplog.text
    assert EMAIL not in caplog.text


def test_infer_several_sequences(client: TestClient) -> None:
    body = {"query": "hello", "num_return_sequences": 3, "max_length": 4}
    resp = client.post("/infer", json=body).json()
    assert len(resp["generated_texts"]) == 3
    assert resp["generated_text"] == resp["generated_texts"][0]


def test_infer_cuts_to_input_max_length(tmp_path: Path, prompts: list[str]) -> None:
    with _client(tmp_path, input_max_length=10) as c:
        assert c.post("/infer", json={"query": "abcdefghij" + "X" * 50}).status_code == 200
    assert "user\nabcdefghij<|im_end|>" in prompts[0]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "x" * 4097}, "query"),
        ({"query": "   \n "}, "query"),
        ({"query": 5}, "query"),
        ({"query": "hi", "max_length": 0}, "max_length"),
        ({"query": "hi", "temperature": 3}, "temperature"),
        ({"query": "hi", "num_return_sequences": 99}, "num_return_sequences"),
    ],
)
def test_infer_400s(client: TestClient, body: dict[str, Any], param: str) -> None:
    _error(client.post("/infer", json=body), param)
    _error(client.post("/infer/stream", json=body), param)


def test_infer_accepts_4096_characters(client: TestClient) -> None:
    assert client.post("/infer", json={"query": "y" * 4096, "max_length": 2}).status_code == 200


def test_infer_stream(client: TestClient, prompts: list[str]) -> None:
    resp = client.post("/infer/stream", json={"query": f"mail {EMAIL}", "max_length": 6})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    pieces = "".join(c.get("text", "") for c in chunks if "index" in c)
    assert any(c.get("finish_reason") == "length" for c in chunks)
    assert chunks[-1]["generated_text"] == pieces
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert "[EMAIL]" in prompts[0]


def test_masking_failure_fails_closed(
    client: TestClient,
    prompts: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(self: PIIMasker, text: str) -> list[Any]:
        raise RuntimeError("recogniser bug")

    monkeypatch.setattr(PIIMasker, "find", broken)
    for path, body in [
        ("/infer", {"query": f"my phone {PHONE}"}),
        ("/infer/stream", {"query": f"my phone {PHONE}"}),
        ("/chat", {"prompt": f"my phone {PHONE}", "model": "private"}),
        ("/generate", {"prompt": f"my phone {PHONE}", "model": "private"}),
    ]:
        resp = client.post(path, json=body)
        assert resp.status_code == 500, path
        assert resp.json()["error"]["code"] == "pii_masking_failed"
        assert PHONE not in resp.text
    chat = {"model": "private", "messages": [{"role": "user", "content": PHONE}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 500
    assert prompts == []  # nothing reached the backend
    assert PHONE not in caplog.text


def test_generate_and_chat_mask_per_model(client: TestClient, prompts: list[str]) -> None:
    resp = client.post("/generate", json={"prompt": f"To {EMAIL}:", "max_tokens": 3}).json()
    assert resp["prompt"] == f"To {EMAIL}:"  # model "fake" does not mask
    assert resp["full_text"] == resp["prompt"] + resp["generated"]
    body = {"prompt": f"To {EMAIL}:", "max_tokens": 3, "model": "private"}
    resp = client.post("/generate", json=body).json()
    assert resp["prompt"] == "To [EMAIL]:"
    assert prompts[-1] == "To [EMAIL]:"
    resp = client.post("/chat", json=body).json()
    assert resp["prompt"] == "To [EMAIL]:"
    assert resp["full_text"].startswith("<|im_start|>user\nTo [EMAIL]:<|im_end|>")
    assert resp["full_text"].endswith(resp["generated"])
    completion = {"model": "private", "prompt": f"To {EMAIL}", "echo": True, "max_tokens": 2}
    text = client.post("/v1/completions", json=completion).json()["choices"][0]["text"]
    assert text.startswith("To [EMAIL]")


def test_generate_and_chat_400s(client: TestClient) -> None:
    for path in ("/generate", "/chat"):
        _error(client.post(path, json={}), "prompt")
        _error(client.post(path, json={"prompt": ""}), "prompt")
        _error(client.post(path, json={"prompt": "hi", "max_tokens": 0}), "max_tokens")
        _error(client.post(path, json={"prompt": "hi", "top_k": -1}), "top_k")
        resp = client.post(path, json={"prompt": "hi", "model": "nope"})
        assert resp.status_code == 404


def test_mask_pii_per_key(tmp_path: Path, prompts: list[str]) -> None:
    path = tmp_path / "keys.json"
    masked = create_key(path, "masked", mask_pii=True)
    plain = create_key(path, "plain")
    with _client(tmp_path, keys_file=path) as c:
        body = {"prompt": f"call {PHONE}", "max_tokens": 2}
        c.post("/generate", json=body, headers={"Authorization": f"Bearer {plain}"})
        c.post("/generate", json=body, headers={"Authorization": f"Bearer {masked}"})
    assert prompts == [f"call {PHONE}", "call [PHONE]"]


def test_partial_mode_and_output_masking(tmp_path: Path) -> None:
    reply = f"Reach me at {PHONE} or {EMAIL} today"
    with _client(tmp_path, fake_model(reply=reply), pii_mask_mode="partial", mask_output=True) as c:
        resp = c.post("/infer", json={"query": "hi"}).json()
        assert PHONE not in resp["generated_text"]
        assert "010-****-5678" in resp["generated_text"]
        events = sse_events(c.post("/infer/stream", json={"query": "hi"}).text)
        final = json.loads(events[-2])
        streamed = "".join(json.loads(e).get("text", "") for e in events[:-2])
        assert streamed == final["generated_text"] == resp["generated_text"]
        assert EMAIL not in streamed


def test_output_masking_on_the_openai_endpoints(tmp_path: Path) -> None:
    reply = f"Reach me at {PHONE} or {EMAIL} today"
    with _client(tmp_path, fake_model(reply=reply), mask_output=True) as c:
        body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
        whole = c.post("/v1/chat/completions", json=body).json()
        text = whole["choices"][0]["message"]["content"]
        assert text == "Reach me at [PHONE] or [EMAIL] today"
        assert whole["usage"]["completion_tokens"] == len(reply.split())
        events = sse_events(c.post("/v1/chat/completions", json={**body, "stream": True}).text)
        chunks = [json.loads(e) for e in events[:-1]]
        pieces = [ch["choices"][0]["delta"].get("content", "") for ch in chunks]
        # the fake model sends the phone number one token at a time; no piece may leak a part
        assert "".join(pieces) == text
        assert not any("1234" in p or "minsu" in p for p in pieces)
        completion = c.post("/v1/completions", json={"model": "fake", "prompt": "hi"}).json()
        assert completion["choices"][0]["text"] == text


def test_fallback_response(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = fake_settings(
        fake_model(load_delay_s=30),
        keys_file=tmp_path / "keys.json",
        fallback_response="Sorry, try again later.",
    )
    with open_client(settings, until=None) as c:
        resp = c.post("/infer", json={"query": "hello"})
        assert resp.status_code == 200
        assert resp.json() == {"generated_text": "Sorry, try again later."}
        assert resp.headers["x-llmserver-fallback"] == "true"
        assert "infer failed, answering with the fallback response" in caplog.text
        assert c.post("/infer", json={"query": ""}).status_code == 400
        # every simple endpoint falls back now (seed 004's fallback; issue 17)
        generate = c.post("/generate", json={"prompt": "hello"})
        assert generate.status_code == 200
        assert generate.json()["generated"] == "Sorry, try again later."
        assert c.post("/v1/chat/completions", json={"messages": []}).status_code == 400
