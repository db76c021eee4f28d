"""``/tokenize`` and ``/detokenize`` on the fake backend: both shapes (vLLM's, llama-server's),
a chat rendered as a chat is, keys, per-key models, masking, and an upstream model's 400."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmserver.security.keys import create_key
from support import fake_model, fake_settings, model_states, open_client


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A fake model, a masked one and an upstream model that never answers."""
    settings = fake_settings(
        fake_model("fake", context_size=512),
        fake_model("private", mask_pii=True),
        {"id": "far", "backend": "upstream", "url": "http://127.0.0.1:9/v1"},
    )
    with open_client(settings, until=_local_models_ready) as c:
        yield c


def _local_models_ready(client: TestClient) -> bool:
    """The two fake models are ready (the upstream one never answers, so /ready never is)."""
    states = model_states(client)
    return states.get("fake") == states.get("private") == "ready"


def test_tokenize_prompt_answers_vllm_shape_and_detokenize_round_trips(
    client: TestClient,
) -> None:
    resp = client.post("/tokenize", json={"model": "fake", "prompt": "the quick fox"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["count"] == 3 == len(body["tokens"])
    assert body["max_model_len"] == 512
    assert all(isinstance(t, int) for t in body["tokens"])
    back = client.post("/detokenize", json={"model": "fake", "tokens": body["tokens"]})
    assert back.status_code == 200, back.text
    assert back.json() == {"prompt": "the quick fox", "content": "the quick fox"}


def test_tokenize_takes_llama_server_names_and_gives_pieces(client: TestClient) -> None:
    resp = client.post(
        "/tokenize", json={"content": "hello world", "with_pieces": True, "add_special": False}
    )
    assert resp.status_code == 200, resp.text
    tokens = resp.json()["tokens"]
    assert [t["piece"] for t in tokens] == ["hello", " world"]
    assert all(isinstance(t["id"], int) for t in tokens)
    strs = client.post("/tokenize", json={"prompt": "hello world", "return_token_strs": True})
    assert strs.json()["token_strs"] == ["hello", " world"]


def test_tokenize_messages_counts_what_the_chat_prompt_counts(client: TestClient) -> None:
    messages = [{"role": "user", "content": "count these words please"}]
    resp = client.post("/tokenize", json={"model": "fake", "messages": messages})
    assert resp.status_code == 200, resp.text
    chat = client.post(
        "/v1/chat/completions", json={"model": "fake", "messages": messages, "max_tokens": 2}
    )
    assert resp.json()["count"] == chat.json()["usage"]["prompt_tokens"]
    text = client.post("/detokenize", json={"tokens": resp.json()["tokens"]}).json()["prompt"]
    assert "<|im_start|>user\ncount these words please<|im_end|>" in text


def test_tokenize_masks_input_like_a_chat(client: TestClient) -> None:
    resp = client.post(
        "/tokenize", json={"model": "private", "prompt": "write to alice@example.com today"}
    )
    assert resp.status_code == 200, resp.text
    text = client.post(
        "/detokenize", json={"model": "private", "tokens": resp.json()["tokens"]}
    ).json()["prompt"]
    assert "alice@example.com" not in text
    assert text.startswith("write to ")


def test_tokenize_errors_are_openai_shaped(client: TestClient) -> None:
    far = client.post("/tokenize", json={"model": "far", "prompt": "hi"})
    assert far.status_code == 400
    error = far.json()["error"]
    assert "'far'" in error["message"]
    assert error["param"] == "model"
    assert client.post("/detokenize", json={"model": "far", "tokens": [1]}).status_code == 400
    both = client.post("/tokenize", json={"prompt": "a", "messages": [{"role": "user"}]})
    assert both.status_code == 400
    assert "error" in both.json()
    assert client.post("/tokenize", json={"model": "nope", "prompt": "a"}).status_code == 404
    assert client.post("/detokenize", json={"tokens": ["x"]}).status_code == 400


def test_tokenize_follows_keys_and_their_models(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    user = create_key(path, "user", models=["fake"])
    settings = fake_settings(fake_model("fake"), fake_model("other"), keys_file=path)
    with open_client(settings) as client:
        headers = {"Authorization": f"Bearer {user}"}
        assert client.post("/tokenize", json={"prompt": "hi"}).status_code == 401
        ok = client.post("/tokenize", json={"model": "fake", "prompt": "hi"}, headers=headers)
        assert ok.status_code == 200, ok.text
        no = client.post("/tokenize", json={"model": "other", "prompt": "hi"}, headers=headers)
        assert no.status_code == 403
        assert no.json()["error"]["code"] == "model_not_allowed"
