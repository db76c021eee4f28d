"""Chat and completions through the whole server stack with the deterministic fake backend."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.testclient import TestClient

from llmserver.backends.fake import REPLY_WORDS, split_tokens
from support import fake_model, fake_settings, open_client, sse_events

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hello there"}]


def chat(client: TestClient, **body: object) -> Any:
    resp = client.post(CHAT, json={"model": "fake", "messages": USER, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_chat_shape_and_usage(client: TestClient) -> None:
    body = chat(client, seed=1)
    assert body["object"] == "chat.completion"
    assert body["model"] == "fake"
    choice = body["choices"][0]
    text = choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == len(split_tokens(text)) == REPLY_WORDS
    prompt = "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n"
    assert usage["prompt_tokens"] == len(split_tokens(prompt))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_alias_and_default_model(client: TestClient) -> None:
    by_alias = client.post(CHAT, json={"model": "f", "messages": USER, "seed": 3}).json()
    by_default = client.post(CHAT, json={"messages": USER, "seed": 3}).json()
    assert by_alias["model"] == by_default["model"] == "fake"
    assert by_alias["choices"][0]["message"] == by_default["choices"][0]["message"]


def test_max_tokens_gives_length(client: TestClient) -> None:
    body = chat(client, max_tokens=3)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_n_choices_differ_by_seed(client: TestClient) -> None:
    body = chat(client, n=3, seed=5)
    choices = body["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == 3 * REPLY_WORDS


def test_stream_equals_non_stream(client: TestClient) -> None:
    whole = chat(client, seed=7)["choices"][0]["message"]["content"]
    resp = client.post(
        CHAT,
        json={
            "model": "fake",
            "messages": USER,
            "seed": 7,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1
    assert finals[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == REPLY_WORDS


def test_stop_string_cuts_text(client: TestClient) -> None:
    whole = chat(client, seed=2)["choices"][0]["message"]["content"]
    word = whole.split()[3]
    body = chat(client, seed=2, stop=[word])
    text = body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "stop"
    assert word not in text
    assert whole.startswith(text)


def test_json_mode_parses(client: TestClient) -> None:
    body = chat(client, response_format={"type": "json_object"})
    assert isinstance(json.loads(body["choices"][0]["message"]["content"]), dict)


def test_completions_list_of_prompts(client: TestClient) -> None:
    resp = client.post(
        "/v1/completions", json={"model": "fake", "prompt": ["one", "two"], "max_tokens": 4}
    )
    body = resp.json()
    assert body["object"] == "text_completion"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert all(c["finish_reason"] == "length" for c in body["choices"])
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 8, "total_tokens": 10}


def test_completions_stream(client: TestClient) -> None:
    resp = client.post(
        "/v1/completions", json={"model": "fake", "prompt": "one", "max_tokens": 4, "stream": True}
    )
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert len("".join(c["choices"][0]["text"] for c in chunks).split()) == 4


def test_models_and_status(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["fake"]
    assert models["data"][0]["state"] == "ready"
    assert client.get("/v1/models/f").json()["id"] == "fake"
    root = client.get("/").json()
    assert root["name"] == "llmserver"
    assert root["models"][0]["slots_in_use"] == 0
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_waits_for_loading() -> None:
    settings = fake_settings(fake_model("slow", load_delay_s=0.5))
    with open_client(settings, until=None, raise_server_exceptions=True) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/ready").status_code == 503
        resp = c.post(CHAT, json={"messages": USER})
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "model_not_ready"
        time.sleep(0.7)
        assert c.get("/ready").status_code == 200
        assert c.post(CHAT, json={"messages": USER}).status_code == 200


def test_content_parts_and_developer_role(client: TestClient) -> None:
    parts = [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}]
    as_parts = chat(client, seed=4, messages=[{"role": "user", "content": parts}])
    as_text = chat(client, seed=4)
    assert as_parts["choices"] == as_text["choices"]
    as_system = chat(client, seed=4, messages=[{"role": "system", "content": "be kind"}, *USER])
    as_developer = chat(
        client, seed=4, messages=[{"role": "developer", "content": "be kind"}, *USER]
    )
    assert as_system["usage"] == as_developer["usage"]
    assert as_system["choices"] == as_developer["choices"]
