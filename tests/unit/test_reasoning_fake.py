"""Reasoning on the fake backend, through every surface in-process: the thought split out of
the reply into each surface's field, the controls that switch it off, and the 400 for a model
that cannot think on Ollama's surface. The fake model's template opens the thought in the
generation prompt (DeepSeek-R1's style); its fixed reply thinks, closes the thought and
answers, one fake token per word."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import fake_model, fake_settings, open_client
from support.anthropic_wire import events
from support.fake import fake_backend
from support.sse import sse_events

R1_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}"
    "{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
REPLY = " I should greet them. </think> Hello there"
THOUGHT, ANSWER = "I should greet them.", "Hello there"
USER = [{"role": "user", "content": "Hi"}]
#: a thought that spells out a call it does not make, then the call in the answer
CALL_REPLY = (
    ' Maybe {"tool_call": {"name": "get_weather", "arguments": {"city": "Rome"}}} first? No.'
    ' </think> {"tool_call": {"name": "get_weather", "arguments": {"city": "Seoul"}}}'
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _client(**settings: Any) -> Iterator[TestClient]:
    models = (
        fake_model("r1", chat_template=R1_TEMPLATE, reply=REPLY),
        fake_model("qwen", chat_template=QWEN_TEMPLATE, reply=" <think>" + REPLY),
        fake_model("plain", reply="Hello"),
        fake_model("distill", reply=REPLY, reasoning={"format": "open"}),
        fake_model("caller", chat_template=R1_TEMPLATE, reply=CALL_REPLY),
        fake_model(
            "field", chat_template=R1_TEMPLATE, reply=REPLY, reasoning={"field": "reasoning"}
        ),
    )
    with open_client(fake_settings(*models, **settings)) as client:
        yield client


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    yield from _client()


def _chat(client: TestClient, model: str = "r1", **body: Any) -> dict[str, Any]:
    resp = client.post("/v1/chat/completions", json={"model": model, "messages": USER, **body})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _stream(client: TestClient, model: str = "r1", **body: Any) -> list[dict[str, Any]]:
    payload = {"model": model, "messages": USER, "stream": True, **body}
    resp = client.post("/v1/chat/completions", json=payload)
    assert resp.status_code == 200, resp.text
    return [json.loads(e) for e in sse_events(resp.text) if e != "[DONE]"]


def test_openai_gives_the_thought_in_reasoning_content_and_counts_its_tokens(
    client: TestClient,
) -> None:
    body = _chat(client)
    message = body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": ANSWER, "reasoning_content": THOUGHT}
    # " I", " should", " greet", " them.", " </think>": thought tokens, marker included
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 5}
    assert body["usage"]["completion_tokens"] == 7
    metrics = client.get("/metrics").text
    assert 'llmserver_reasoning_tokens_total{model="r1"}' in metrics


def test_openai_stream_sends_the_thought_before_the_answer(client: TestClient) -> None:
    chunks = _stream(client)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    thought = "".join(d.get("reasoning_content") or "" for d in deltas)
    answer = "".join(d.get("content") or "" for d in deltas)
    assert (thought, answer) == (THOUGHT, ANSWER)
    first_answer = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert not any(d.get("reasoning_content") for d in deltas[first_answer:])


def test_a_template_switch_is_used_and_a_model_opened_thought_is_split(client: TestClient) -> None:
    message = _chat(client, "qwen")["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == (THOUGHT, ANSWER)
    _chat(client, "qwen", chat_template_kwargs={"enable_thinking": False})
    assert fake_backend(client, "qwen").received[-1].prompt.endswith("<think>\n\n</think>\n\n")


@pytest.mark.parametrize("control", [{"reasoning_effort": "none"}, {"think": False}])
def test_thinking_off_closes_an_opened_thought_in_the_prompt(
    client: TestClient, control: dict[str, Any]
) -> None:
    _chat(client, **control)
    assert fake_backend(client, "r1").received[-1].prompt.endswith("<think>\n</think>\n\n")


def test_the_field_is_a_setting_per_model_and_per_server(client: TestClient) -> None:
    message = _chat(client, "field")["choices"][0]["message"]
    assert message == {"role": "assistant", "content": ANSWER, "reasoning": THOUGHT}
    for setting, expected in [
        ("both", {"reasoning_content": THOUGHT, "reasoning": THOUGHT, "content": ANSWER}),
        ("inline", {"content": f"<think>{THOUGHT}</think>\n\n{ANSWER}"}),
    ]:
        for c in _client(reasoning_field=setting):
            message = _chat(c)["choices"][0]["message"]
            assert message == {"role": "assistant", **expected}
            deltas = [ch["choices"][0]["delta"] for ch in _stream(c) if ch["choices"]]
            for key, value in expected.items():
                assert "".join(d.get(key) or "" for d in deltas) == value


def test_json_mode_on_an_engine_that_cannot_defer_it_answers_without_a_thought(
    client: TestClient,
) -> None:
    body = _chat(client, response_format={"type": "json_object"})
    message = body["choices"][0]["message"]
    assert json.loads(message["content"])["answer"] == "fake"
    assert "reasoning_content" not in message


def test_thinking_asked_of_a_model_that_cannot_think(client: TestClient) -> None:
    # OpenAI's surface ignores it; Ollama's answers its own 400
    assert _chat(client, "plain", reasoning_effort="high")["choices"][0]["message"]["content"]
    resp = client.post("/api/chat", json={"model": "plain", "messages": USER, "think": True})
    assert resp.status_code == 400
    assert resp.json() == {"error": '"plain" does not support thinking'}


def test_capabilities_list_thinking(client: TestClient) -> None:
    cards = {m["id"]: m["capabilities"] for m in client.get("/v1/models").json()["data"]}
    assert "thinking" in cards["r1"]
    assert "thinking" in cards["qwen"]
    assert "thinking" not in cards["plain"]
    shown = client.post("/api/show", json={"model": "r1"}).json()
    assert "thinking" in shown["capabilities"]


def test_ollama_chat_and_generate_give_thinking(client: TestClient) -> None:
    body = {"model": "r1", "messages": USER, "think": True, "stream": False}
    message = client.post("/api/chat", json=body).json()["message"]
    assert (message["thinking"], message["content"]) == (THOUGHT, ANSWER)
    lines = client.post("/api/chat", json={**body, "stream": True}).text.splitlines()
    pieces = [json.loads(line)["message"] for line in lines]
    assert "".join(p.get("thinking", "") for p in pieces) == THOUGHT
    assert "".join(p["content"] for p in pieces) == ANSWER
    gen = {"model": "r1", "prompt": "Hi", "think": "low", "stream": False}
    out = client.post("/api/generate", json=gen).json()
    assert (out["thinking"], out["response"]) == (THOUGHT, ANSWER)
    bad = client.post("/api/generate", json={**gen, "think": "very"})
    assert bad.status_code == 400


def test_anthropic_gives_a_thinking_block_and_thinking_deltas(client: TestClient) -> None:
    body = {"model": "r1", "max_tokens": 50, "messages": USER}
    thinking = {"type": "enabled", "budget_tokens": 1024}
    out = client.post("/v1/messages", json={**body, "thinking": thinking}).json()
    assert out["content"] == [
        {"type": "thinking", "thinking": THOUGHT, "signature": ""},
        {"type": "text", "text": ANSWER},
    ]
    resp = client.post("/v1/messages", json={**body, "stream": True})
    seen = events(resp.text)
    starts = [e["content_block"]["type"] for n, e in seen if n == "content_block_start"]
    assert starts == ["thinking", "text"]
    deltas = [e["delta"] for n, e in seen if n == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == THOUGHT
    assert "".join(d.get("text", "") for d in deltas) == ANSWER


def test_a_thought_sent_back_reaches_the_template_under_either_name(client: TestClient) -> None:
    for name in ("reasoning_content", "reasoning"):
        turns = [*USER, {"role": "assistant", "content": "Hello", name: "old thought"}, *USER]
        _chat(client, "qwen", messages=turns)
        assert "<think>old thought</think>Hello" in fake_backend(client, "qwen").received[-1].prompt
    anthropic = [
        *USER,
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                          {"type": "text", "text": "Hello"}]},
        *USER,
    ]  # fmt: skip
    body = {"model": "qwen", "max_tokens": 5, "messages": anthropic}
    assert client.post("/v1/messages", json=body).status_code == 200
    assert "<think>t</think>Hello" in fake_backend(client, "qwen").received[-1].prompt
    ollama = [*USER, {"role": "assistant", "content": "Hello", "thinking": "o"}, *USER]
    body = {"model": "qwen", "messages": ollama, "stream": False}
    assert client.post("/api/chat", json=body).status_code == 200
    assert "<think>o</think>Hello" in fake_backend(client, "qwen").received[-1].prompt


def test_tool_calls_are_parsed_from_the_answer_never_from_the_thought(client: TestClient) -> None:
    message = _chat(client, "caller", tools=[WEATHER_TOOL])["choices"][0]["message"]
    calls = message["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Seoul"}]
    assert "Rome" in message["reasoning_content"]


def test_a_model_whose_reply_starts_inside_the_thought_is_split_by_config(
    client: TestClient,
) -> None:
    # format "open": no <think> in the prompt or the reply, only the end marker
    message = _chat(client, "distill")["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == (THOUGHT, ANSWER)
    _chat(client, "distill", reasoning_effort="none")
    prompt = fake_backend(client, "distill").received[-1].prompt
    assert prompt.endswith("<|im_start|>assistant\n<think>\n</think>\n\n")
