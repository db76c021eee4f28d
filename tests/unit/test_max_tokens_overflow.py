"""A ``max_tokens`` past the room the prompt leaves in the context: one rule on every surface,
``max_tokens_overflow`` (clamp by default, or a 400)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import fake_model, fake_settings, open_client

#: the fake model's context: a few words of prompt leave most of it for an answer (its reply
#: is longer than the context, so only the context's end stops it)
CONTEXT = 64
USER = [{"role": "user", "content": "hello there"}]


def serve(**settings: Any) -> Iterator[TestClient]:
    model = fake_model("fake", context_size=CONTEXT, reply="word " * 2 * CONTEXT)
    with open_client(fake_settings(model, **settings)) as client:
        yield client


@pytest.fixture
def clamping() -> Iterator[TestClient]:
    yield from serve()


@pytest.fixture
def strict() -> Iterator[TestClient]:
    yield from serve(max_tokens_overflow="error")


def test_openai_chat_is_clamped_to_the_context_and_ends_with_length(
    clamping: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "llmserver.prompts")
    body = {"model": "fake", "messages": USER, "max_tokens": 5000}
    resp = clamping.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["total_tokens"] == CONTEXT
    assert "max_tokens 5000 is past the context" in caplog.text


def test_anthropic_messages_are_clamped_and_stop_on_max_tokens(clamping: TestClient) -> None:
    body = {"model": "fake", "messages": USER, "max_tokens": 4096}
    resp = clamping.post("/v1/messages", json=body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["stop_reason"] == "max_tokens"
    assert answer["usage"]["input_tokens"] + answer["usage"]["output_tokens"] == CONTEXT


def test_ollama_num_predict_is_clamped_too(clamping: TestClient) -> None:
    body = {
        "model": "fake",
        "prompt": "x",
        "stream": False,
        "options": {"num_predict": 100000},
    }
    answer = clamping.post("/api/generate", json=body).json()
    assert answer["done_reason"] == "length"
    assert answer["prompt_eval_count"] + answer["eval_count"] == CONTEXT


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": USER, "max_tokens": 5000}),
        ("/v1/completions", {"prompt": "hello there", "max_tokens": 5000}),
        ("/v1/messages", {"messages": USER, "max_tokens": 4096}),
        ("/api/generate", {"prompt": "x", "stream": False, "options": {"num_predict": 5000}}),
    ],
)
def test_error_mode_refuses_on_every_surface(
    strict: TestClient, path: str, body: dict[str, Any]
) -> None:
    resp = strict.post(path, json={"model": "fake", **body})
    assert resp.status_code == 400, resp.text
    assert f"maximum context length is {CONTEXT} tokens" in resp.text


def test_a_prompt_that_fills_the_context_is_a_400_even_when_clamping(
    clamping: TestClient,
) -> None:
    messages = [{"role": "user", "content": "word " * CONTEXT}]
    resp = clamping.post("/v1/chat/completions", json={"model": "fake", "messages": messages})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "context_length_exceeded"
