"""Masking that gives the answer back: numbered placeholders per request, put back into the
answer, streamed too (a placeholder split across deltas is held until whole); a placeholder
the request did not issue is left as it is."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmserver.privacy import PIIMasker, Vault
from support import fake_model, fake_settings, open_client
from support.fake import fake_backend

PHONE, EMAIL = "010-1234-5678", "kim@example.com"
ASKED = f"전화 {PHONE}, 메일 {EMAIL}, 다시 {PHONE}"
ANSWER = "I will call [PHONE_1] and write to [EMAIL_2]; [PHONE_9] is not ours."
RESTORED = f"I will call {PHONE} and write to {EMAIL}; [PHONE_9] is not ours."


def _vault() -> Vault:
    vault = Vault(PIIMasker())
    assert vault.mask(ASKED) == "전화 [PHONE_1], 메일 [EMAIL_2], 다시 [PHONE_1]"
    return vault


def test_the_same_value_gets_the_same_numbered_placeholder() -> None:
    vault = _vault()
    assert vault.mask(f"또 {EMAIL}") == "또 [EMAIL_2]"  # one counter for the whole request
    assert vault.restore(ANSWER) == RESTORED


@pytest.mark.parametrize("cut", range(1, len(ANSWER)))
def test_a_placeholder_split_anywhere_comes_back_whole(cut: int) -> None:
    stream = _vault().stream()
    out = stream.feed(ANSWER[:cut]) + stream.feed(ANSWER[cut:]) + stream.flush()
    assert out == RESTORED


def test_a_character_at_a_time_and_an_unfinished_placeholder_at_the_end() -> None:
    stream = _vault().stream()
    text = "ok [PHONE_1] [PHONE_"
    out = "".join(stream.feed(c) for c in text) + stream.flush()
    assert out == f"ok {PHONE} [PHONE_"


def test_a_placeholder_the_request_did_not_issue_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="llmserver.privacy"):
        assert _vault().restore("[EMAIL_7]") == "[EMAIL_7]"
    assert "[EMAIL_7]" in caplog.text


@pytest.fixture
def client() -> Iterator[TestClient]:
    """``restoring`` answers with placeholders; ``masking`` masks one way."""
    settings = fake_settings(
        fake_model("restoring", pii_restore=True, reply=ANSWER),
        fake_model("masking", mask_pii=True, reply=ANSWER),
    )
    with open_client(settings) as c:
        yield c


def _chat(client: TestClient, model: str, stream: bool = False) -> str:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": ASKED}]}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    if not stream:
        return str(resp.json()["choices"][0]["message"]["content"])
    events = [e.removeprefix("data: ") for e in resp.text.split("\n\n") if e.startswith("data: ")]
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.mark.parametrize("stream", [False, True])
def test_the_model_sees_placeholders_and_the_caller_gets_the_values(
    client: TestClient, stream: bool
) -> None:
    assert _chat(client, "restoring", stream) == RESTORED
    seen = fake_backend(client, "restoring").seen
    assert "[PHONE_1]" in seen[-1]
    assert not any(PHONE in text or EMAIL in text for text in seen)


def test_one_way_masking_stays_the_default(client: TestClient) -> None:
    assert _chat(client, "masking") == ANSWER
    assert "[PHONE]" in fake_backend(client, "masking").seen[-1]


def test_ollama_and_anthropic_answers_are_restored_too(client: TestClient) -> None:
    messages = [{"role": "user", "content": ASKED}]
    ollama = client.post("/api/chat", json={"model": "restoring", "messages": messages,
                                            "stream": False})  # fmt: skip
    assert ollama.json()["message"]["content"] == RESTORED
    anthropic = client.post(
        "/v1/messages", json={"model": "restoring", "max_tokens": 64, "messages": messages}
    )
    assert anthropic.json()["content"][0]["text"] == RESTORED
