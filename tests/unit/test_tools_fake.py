"""Tool calling on the OpenAI surface with the fake backend: shapes, streaming, bad input,
tool messages, and an upstream that passes tools through and relays its calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import fake_model, fake_settings, open_client, sse_events
from support.fake import fake_backend
from support.mock_upstream import serve, tool_calling
from support.tools import GENERIC_CALL as CALL_REPLY
from support.tools import WEATHER_QUESTION as USER
from support.tools import WEATHER_TOOL as WEATHER

CHAT = "/v1/chat/completions"


@pytest.fixture
def tools_client() -> Iterator[TestClient]:
    """Fake models whose replies are a generic-JSON call, a bad call, and plain text."""
    with open_client(
        fake_settings(
            fake_model("caller", reply=CALL_REPLY),
            fake_model("broken", reply='{"tool_call": {"name": "get_weather", "arguments": 7}}'),
            fake_model("named", reply='{"city": "Paris"}'),
            fake_model("talker", reply="It is sunny."),
            max_tools=3,
            max_tool_schema_bytes=400,
        )
    ) as c:
        yield c


def chat(client: TestClient, model: str, **extra: Any) -> Any:
    return client.post(CHAT, json={"model": model, "messages": USER, "tools": [WEATHER], **extra})


def stream_chunks(client: TestClient, model: str, **extra: Any) -> list[dict[str, Any]]:
    resp = chat(client, model, stream=True, **extra)
    assert resp.status_code == 200, resp.text
    return [json.loads(e) for e in sse_events(resp.text) if e != "[DONE]"]


def reassemble(chunks: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]], str | None]:
    """Content, calls (id, name, arguments) and finish reason, as the openai client does it."""
    content, finish = "", None
    calls: list[dict[str, str]] = []
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for piece in delta.get("tool_calls") or []:
                if piece["index"] == len(calls):
                    assert set(piece) == {"index", "id", "type", "function"}
                    assert piece["type"] == "function"
                    calls.append({"id": piece["id"], "name": piece["function"]["name"]})
                    calls[-1]["arguments"] = piece["function"]["arguments"]
                else:
                    assert set(piece) == {"index", "function"}
                    calls[piece["index"]]["arguments"] += piece["function"]["arguments"]
            finish = choice["finish_reason"] or finish
    return content, calls, finish


def test_auto_call_is_parsed(tools_client: TestClient) -> None:
    resp = chat(tools_client, "caller")
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_streamed_call_reassembles_to_the_non_streamed_one(tools_client: TestClient) -> None:
    whole = chat(tools_client, "caller").json()["choices"][0]["message"]
    content, calls, finish = reassemble(stream_chunks(tools_client, "caller"))
    assert content == ""
    assert finish == "tool_calls"
    assert [(c["name"], c["arguments"]) for c in calls] == [
        (c["function"]["name"], c["function"]["arguments"]) for c in whole["tool_calls"]
    ]


def test_named_tool_choice_reads_the_arguments(tools_client: TestClient) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    resp = chat(tools_client, "named", tool_choice=choice)
    assert resp.status_code == 200, resp.text
    body = resp.json()["choices"][0]
    assert body["finish_reason"] == "tool_calls"
    assert body["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    # the fake backend answers a JSON constraint with a JSON object of its own
    assert isinstance(json.loads(body["message"]["tool_calls"][0]["function"]["arguments"]), dict)


def test_malformed_call_in_auto_mode_is_content_and_logged(
    tools_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    resp = chat(tools_client, "broken")
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert choice["message"]["content"] == (
        '{"tool_call": {"name": "get_weather", "arguments": 7}}'
    )
    assert any("kept as content" in r.getMessage() for r in caplog.records)
    content, calls, _ = reassemble(stream_chunks(tools_client, "broken"))
    assert content == choice["message"]["content"]
    assert calls == []


def test_plain_reply_with_tools_is_content(tools_client: TestClient) -> None:
    choice = chat(tools_client, "talker").json()["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "It is sunny."}
    assert choice["finish_reason"] == "stop"


def test_tool_choice_none_gives_text(tools_client: TestClient) -> None:
    choice = chat(tools_client, "caller", tool_choice="none").json()["choices"][0]
    assert choice["message"]["content"] == CALL_REPLY
    assert choice["finish_reason"] == "stop"


def test_round_trip_messages_reach_the_template(tools_client: TestClient) -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C and sunny"},
    ]
    resp = tools_client.post(
        CHAT, json={"model": "talker", "messages": messages, "tools": [WEATHER]}
    )
    assert resp.status_code == 200, resp.text
    backend = fake_backend(tools_client, "talker")
    prompt = backend.seen[-1] if isinstance(backend.seen[-1], str) else ""
    seen = "\n".join(backend.seen)
    assert "21 C and sunny" in seen
    assert '"get_weather"' in seen  # the earlier call, and the tool list, as the model reads it
    assert prompt


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"tools": [{**WEATHER, "function": {"name": "f", "parameters": {"type": 5}}}]},
            "tools[0].function.parameters",
        ),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [WEATHER] * 4}, "tools"),
        (
            {
                "tools": [
                    {
                        **WEATHER,
                        "function": {
                            "name": "big",
                            "parameters": {"type": "object", "description": "x" * 500},
                        },
                    }
                ]
            },
            "tools[0].function.parameters",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        ({"tools": [{**WEATHER, "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": None, "tool_choice": "required"}, "tool_choice"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_bad_tool_input_is_a_400_with_param(
    tools_client: TestClient, extra: dict[str, Any], param: str
) -> None:
    body = {"model": "caller", "messages": USER, "tools": [WEATHER], **extra}
    resp = tools_client.post(CHAT, json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_unmatched_tool_call_id_is_a_400(tools_client: TestClient) -> None:
    messages = [*USER, {"role": "tool", "tool_call_id": "call_x", "content": "?"}]
    resp = tools_client.post(CHAT, json={"model": "caller", "messages": messages})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "messages[1].tool_call_id"


def test_upstream_gets_tools_unchanged_and_its_calls_are_relayed() -> None:
    from llmserver.config.settings import load_settings

    messages = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    choice = {"type": "function", "function": {"name": "get_weather"}}
    with serve(tool_calling()) as up:
        model = {"id": "up", "url": up.base_url, "probe_interval_s": 0.05}
        settings = load_settings({"models": [model], "keys_file": "/nonexistent/k.json"})
        with open_client(settings, raise_server_exceptions=True) as client:
            body = {"model": "up", "messages": messages, "tools": [WEATHER], "tool_choice": choice}
            whole = client.post(CHAT, json=body)
            assert whole.status_code == 200, whole.text
            streamed = client.post(CHAT, json={**body, "stream": True})
        sent = up.requests[-1]["body"]
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == choice
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent["messages"][2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    result = whole.json()["choices"][0]
    assert result["finish_reason"] == "tool_calls"
    assert result["message"]["tool_calls"] == [
        {
            "id": "call_up1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    chunks = [json.loads(e) for e in sse_events(streamed.text) if e != "[DONE]"]
    content, calls, finish = reassemble(chunks)
    assert (content, finish) == ("", "tool_calls")
    assert calls == [{"id": "call_up1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]


def test_output_masking_masks_tool_call_arguments() -> None:
    """mask_output reaches the arguments of a call, streamed (no piece leaks a part) and not."""
    email, phone = "kim.minsu@example.com", "010-1234-5678"
    reply = (
        '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris", '
        f'"contact": "{email}", "phone": "call {phone} now"}}}}}}'
    )
    with open_client(fake_settings(fake_model("caller", reply=reply), mask_output=True)) as c:
        whole = chat(c, "caller").json()["choices"][0]
        (call,) = whole["message"]["tool_calls"]
        args = json.loads(call["function"]["arguments"])
        assert args == {"city": "Paris", "contact": "[EMAIL]", "phone": "call [PHONE] now"}
        chunks = stream_chunks(c, "caller")
        content, calls, finish = reassemble(chunks)
        assert (content, finish) == ("", "tool_calls")
        assert calls[0]["arguments"] == call["function"]["arguments"]
        pieces = [
            p["function"]["arguments"]
            for ch in chunks
            for choice in ch["choices"]
            for p in choice["delta"].get("tool_calls") or []
        ]
        assert not any("minsu" in p or "1234" in p for p in pieces)
