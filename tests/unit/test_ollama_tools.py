"""Tool calling on Ollama's ``/api/chat`` with the fake backend: tools in Ollama's shape, calls
parsed from the model's own format (generic JSON and Hermes), calls streamed as Ollama streams
them, tool results tied to calls by ``tool_name``, bad input, an OpenAI upstream whose call
arrives in argument fragments, and an Ollama upstream that gets the tools and relays its
calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.config.settings import load_settings
from llmserver.errors import InvalidRequestError
from llmserver.surfaces.ollama import schemas as wire
from llmserver.surfaces.ollama import tools
from support import fake_model, fake_settings, open_client
from support.fake import fake_backend
from support.mock_upstream import recorded_ollama, serve, tool_calling
from support.tools import GENERIC_CALL, HERMES_CALLS
from support.tools import WEATHER_QUESTION as USER
from support.tools import WEATHER_TOOL as WEATHER

CHAT = "/api/chat"
HERMES_TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "hermes_tools.jinja"
RECORDING: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "ollama_recorded.json").read_text()
)
#: the tool-call answer of Ollama's docs/api.md ("Chat request (with tools)"), model renamed
OLLAMA_TOOL_ANSWER = [
    {
        "model": "llama3.2",
        "created_at": "2024-07-22T20:33:28.123648Z",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "function": {
                        "name": "get_current_weather",
                        "arguments": {"format": "celsius", "location": "Paris, FR"},
                    }
                }
            ],
        },
        "done_reason": "stop",
        "done": True,
        "total_duration": 885095291,
        "load_duration": 3753500,
        "prompt_eval_count": 122,
        "prompt_eval_duration": 328493000,
        "eval_count": 33,
        "eval_duration": 552222000,
    }
]


@pytest.fixture(scope="module")
def api() -> Iterator[TestClient]:
    with open_client(
        fake_settings(
            fake_model("caller", reply=GENERIC_CALL),
            fake_model("hermes", reply=HERMES_CALLS, chat_template=str(HERMES_TEMPLATE)),
            fake_model("talker", reply="It is sunny in Paris."),
        )
    ) as c:
        yield c


def chat(client: TestClient, model: str, **extra: Any) -> Any:
    body = {"model": model, "messages": USER, "tools": [WEATHER], "stream": False, **extra}
    return client.post(CHAT, json=body)


def streamed(client: TestClient, model: str, **extra: Any) -> list[dict[str, Any]]:
    resp = chat(client, model, stream=True, **extra)
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines() if line]


def reassemble(lines: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]], str]:
    """Content, calls and done_reason of a stream, as the ollama client's users add them up."""
    content, calls = "", []
    for line in lines[:-1]:
        assert line["done"] is False
        content += line["message"]["content"]
        calls += line["message"].get("tool_calls", [])
    assert lines[-1]["done"] is True
    assert lines[-1]["message"] == {"role": "assistant", "content": ""}
    return content, calls, lines[-1]["done_reason"]


def test_an_auto_call_comes_back_with_arguments_as_an_object(api: TestClient) -> None:
    resp = chat(api, "caller")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["done_reason"] == "stop"  # Ollama's, also when the model called a tool
    message = body["message"]
    assert message["role"] == "assistant"
    assert message["content"] == ""
    (call,) = message["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}


@pytest.mark.parametrize("model", ["caller", "hermes"])
def test_streamed_calls_equal_the_non_streamed_answer(api: TestClient, model: str) -> None:
    whole = chat(api, model).json()
    content, calls, reason = reassemble(streamed(api, model))
    assert content == whole["message"]["content"]
    assert "<tool_call>" not in content
    assert reason == whole["done_reason"] == "stop"
    strip = [c["function"] for c in calls]
    assert strip == [c["function"] for c in whole["message"]["tool_calls"]]


def test_a_hermes_reply_keeps_its_text_and_both_calls(api: TestClient) -> None:
    message = chat(api, "hermes").json()["message"]
    assert message["content"].strip() == "Let me look."
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == [
        {"city": "Paris"},
        {"city": "Lyon"},
    ]
    assert [c["function"]["index"] for c in message["tool_calls"]] == [0, 1]
    assert len({c["id"] for c in message["tool_calls"]}) == 2


def test_tools_reach_the_template_and_text_without_a_call_is_content(api: TestClient) -> None:
    resp = chat(api, "talker")
    body = resp.json()
    assert body["message"] == {"role": "assistant", "content": "It is sunny in Paris."}
    assert body["done_reason"] == "stop"
    backend = fake_backend(api, "talker")
    assert "get_weather" in backend.received[-1].prompt  # the prompt describes the tool


def test_a_round_trip_renders_the_call_and_the_tool_result(api: TestClient) -> None:
    history = [
        *USER,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "18 degrees, light rain", "tool_name": "get_weather"},
    ]
    resp = chat(api, "hermes", messages=history)
    assert resp.status_code == 200, resp.text
    backend = fake_backend(api, "hermes")
    prompt = backend.received[-1].prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    assert "<tool_response>\n18 degrees, light rain\n</tool_response>" in prompt


def _turns(messages: list[dict[str, Any]]) -> Any:
    req = wire.ChatRequest.model_validate({"model": "m", "messages": messages})
    return tools.messages("m", req)


def _assistant(*names: str, ids: bool = False) -> dict[str, Any]:
    calls = [
        {"function": {"name": n, "arguments": {}}, **({"id": f"id{k}"} if ids else {})}
        for k, n in enumerate(names)
    ]
    return {"role": "assistant", "content": "", "tool_calls": calls}


def test_tool_results_answer_the_calls_of_their_tool_in_order() -> None:
    turns = _turns(
        [
            *USER,
            _assistant("get_weather", "get_time", "get_weather"),
            {"role": "tool", "content": "rain", "tool_name": "get_weather"},
            {"role": "tool", "content": "noon", "tool_name": "get_time"},
            {"role": "tool", "content": "sun", "tool_name": "get_weather"},
        ]
    )
    ids = [call.id for call in turns[1].tool_calls]
    assert ids == ["call_1_0", "call_1_1", "call_1_2"]  # from their place: stable prompts
    assert [t.tool_call_id for t in turns[2:]] == [ids[0], ids[1], ids[2]]
    assert [t.content for t in turns[2:]] == ["rain", "noon", "sun"]


def test_tool_results_without_a_name_answer_the_next_call_and_ids_are_kept() -> None:
    turns = _turns(
        [
            *USER,
            _assistant("a", "b", ids=True),
            {"role": "tool", "content": "1"},
            {"role": "tool", "content": "2", "tool_call_id": "id1"},
        ]
    )
    assert [t.tool_call_id for t in turns[2:]] == ["id0", "id1"]


def test_a_later_result_for_an_answered_tool_answers_its_latest_call() -> None:
    turns = _turns(
        [
            *USER,
            _assistant("a"),
            {"role": "tool", "content": "1", "tool_name": "a"},
            {"role": "user", "content": "again"},
            _assistant("a"),
            {"role": "tool", "content": "2", "tool_name": "a"},
            {"role": "tool", "content": "3", "tool_name": "a"},
        ]
    )
    assert [t.tool_call_id for t in turns if t.role == "tool"] == [
        "call_1_0",
        "call_4_0",
        "call_4_0",
    ]


@pytest.mark.parametrize(
    ("messages", "text"),
    [
        ([*USER, {"role": "tool", "content": "x", "tool_name": "f"}], "tool_name 'f'"),
        ([*USER, {"role": "tool", "content": "x"}], "without tool_name"),
        ([*USER, _assistant("a"), {"role": "tool", "content": "x", "tool_name": "b"}], "'b'"),
        ([{**_assistant("a"), "role": "user"}], "only assistant messages"),
        ([{"role": "robot", "content": "x"}], "invalid role"),
    ],
)
def test_tool_messages_that_answer_nothing_are_refused(
    messages: list[dict[str, Any]], text: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _turns(messages)
    assert text in info.value.message


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "type 'retrieval'"),
        ({"tools": [{"type": "function"}]}, "function"),
        (
            {
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}],
                    },
                ]
            },
            "arguments",
        ),
        (
            {"messages": [*USER, {"role": "tool", "content": "x", "tool_call_id": "nope"}]},
            "tool_call_id 'nope'",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "parameters",
        ),
    ],
)
def test_bad_tool_input_is_an_ollama_shaped_400(
    api: TestClient, extra: dict[str, Any], text: str
) -> None:
    resp = chat(api, "talker", **extra)
    assert resp.status_code == 400, resp.text
    assert set(resp.json()) == {"error"}
    assert text in resp.json()["error"]


def test_a_call_arriving_in_argument_fragments_is_sent_whole() -> None:
    """An OpenAI upstream streams its call's arguments in pieces; Ollama's client gets the
    call once, with its arguments as one object."""
    with serve(tool_calling()) as up:
        model = {"id": "up", "url": up.base_url, "probe_interval_s": 0.05}
        settings = load_settings({"models": [model], "keys_file": "/nonexistent/k.json"})
        with open_client(settings, raise_server_exceptions=True) as client:
            whole = chat(client, "up").json()
            lines = streamed(client, "up")
        sent = up.requests[-1]["body"]
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == "auto"
    expected = [
        {
            "id": "call_up1",
            "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
        }
    ]
    assert whole["message"]["tool_calls"] == expected
    content, calls, reason = reassemble(lines)
    assert (content, calls, reason) == ("", expected, "stop")


def test_an_ollama_upstream_gets_the_tools_and_its_calls_are_relayed() -> None:
    history = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    recording = {**RECORDING, "chat_stream": OLLAMA_TOOL_ANSWER}
    with serve(recorded_ollama(recording)) as up:
        entry = {"id": "llama3.2", "backend": "ollama", "url": f"http://127.0.0.1:{up.port}"}
        with open_client(fake_settings(entry), raise_server_exceptions=True) as client:
            body = {"model": "llama3.2", "messages": history, "tools": [WEATHER]}
            openai_answer = client.post("/v1/chat/completions", json=body).json()
            ollama_answer = chat(client, "llama3.2")
            refused = client.post("/v1/chat/completions", json={**body, "tool_choice": "required"})
            plain = client.post("/v1/chat/completions", json={**body, "tool_choice": "none"})
            streamed_refusal = client.post(
                "/v1/chat/completions", json={**body, "tool_choice": "required", "stream": True}
            )
        sent = [r["body"] for r in up.requests if r["path"] == "/api/chat"]
    assert sent[0]["tools"] == [WEATHER]
    assert sent[0]["messages"][1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
        ],
    }
    assert sent[0]["messages"][2] == {
        "role": "tool",
        "content": "sunny",
        "tool_call_id": "c1",
        "tool_name": "get_weather",
    }
    choice = openai_answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_current_weather"
    args = json.loads(call["function"]["arguments"])
    assert args == {"format": "celsius", "location": "Paris, FR"}
    assert ollama_answer.json()["message"]["tool_calls"][0]["function"]["arguments"] == args
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "tool_choice"
    assert "Ollama cannot be made to call a tool" in refused.json()["error"]["message"]
    assert streamed_refusal.status_code == 400  # before the stream began
    assert "tools" not in sent[-1]  # tool_choice none: Ollama gets no tools
    assert plain.status_code == 200


def test_a_call_cut_short_by_num_predict_is_a_call_with_empty_arguments(api: TestClient) -> None:
    # the fake tokenizer counts words: 8 tokens end inside the first call's arguments object
    resp = chat(api, "hermes", options={"num_predict": 8})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["done_reason"] == "length"
    (call,) = body["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"] == {}  # '{"city":' is no object
    _, calls, reason = reassemble(streamed(api, "hermes", options={"num_predict": 8}))
    assert reason == "length"
    assert [c["function"] for c in calls] == [call["function"]]
