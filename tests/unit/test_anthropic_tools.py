"""Tool use on Anthropic's ``/v1/messages`` with the fake backend: ``tool_use`` blocks and
``stop_reason: "tool_use"``, the stream's ``tool_use`` blocks with ``input_json_delta``
fragments equal to the message, ``tool_choice`` as the core's modes, ``tool_result`` blocks as
tool messages, and errors in Anthropic's envelope naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.config.settings import load_settings
from support import fake_model, fake_settings, open_client
from support.anthropic_wire import error_of, events
from support.fake import fake_backend
from support.mock_upstream import serve, tool_calling
from support.tools import ANTHROPIC_WEATHER_TOOL as WEATHER
from support.tools import CITY_SCHEMA as SCHEMA
from support.tools import GENERIC_CALL, HERMES_CALLS
from support.tools import WEATHER_QUESTION as USER

MESSAGES = "/v1/messages"
HERMES_TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "hermes_tools.jinja"
HISTORY: list[Any] = [
    *USER,
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "service down"}],
                "is_error": True,
            },
            {"type": "text", "text": "Try to answer anyway."},
        ],
    },
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


def body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": USER, "tools": [WEATHER], **extra}


def message(client: TestClient, model: str, **extra: Any) -> dict[str, Any]:
    resp = client.post(MESSAGES, json=body(model, **extra))
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def reassemble(got: list[tuple[str, dict[str, Any]]]) -> tuple[list[dict[str, Any]], str]:
    """The content blocks and stop reason of a stream, as the SDK accumulates them; checks
    that each block starts, takes deltas only while open, and stops, in index order."""
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    open_index: int | None = None
    stop = ""
    for name, data in got:
        if name == "content_block_start":
            assert open_index is None
            assert data["index"] == len(blocks)
            open_index = data["index"]
            blocks.append(dict(data["content_block"]))
            if blocks[-1]["type"] == "tool_use":
                assert blocks[-1]["input"] == {}
                partial[open_index] = ""
        elif name == "content_block_delta":
            index = data["index"]
            assert index == open_index
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[index]["text"] += delta["text"]
            else:
                assert delta["type"] == "input_json_delta"
                partial[index] += delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name == "message_delta":
            stop = data["delta"]["stop_reason"]
    assert open_index is None
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text) if text else {}
    return blocks, stop


def stream(client: TestClient, model: str, **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    resp = client.post(MESSAGES, json=body(model, stream=True, **extra))
    assert resp.status_code == 200, resp.text
    return events(resp.text)


def test_an_auto_call_is_a_tool_use_block(api: TestClient) -> None:
    got = message(api, "caller")
    assert got["stop_reason"] == "tool_use"
    (block,) = got["content"]
    assert block["type"] == "tool_use"
    assert block["id"].startswith("toolu_")
    assert (block["name"], block["input"]) == ("get_weather", {"city": "Paris"})


@pytest.mark.parametrize("model", ["caller", "hermes", "talker"])
def test_the_stream_reassembles_to_the_message(api: TestClient, model: str) -> None:
    whole = message(api, model)
    got = stream(api, model)
    names = [n for n, _ in got]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    blocks, stop = reassemble(got)
    assert stop == whole["stop_reason"]
    ids = [b.pop("id", None) for b in blocks]
    whole_ids = [b.pop("id", None) for b in whole["content"]]
    assert blocks == whole["content"]
    assert [i is None for i in ids] == [i is None for i in whole_ids]


def test_text_before_calls_is_its_own_block(api: TestClient) -> None:
    got = message(api, "hermes")
    assert got["stop_reason"] == "tool_use"
    assert [b["type"] for b in got["content"]] == ["text", "tool_use", "tool_use"]
    assert got["content"][0]["text"].strip() == "Let me look."
    assert [b["input"]["city"] for b in got["content"][1:]] == ["Paris", "Lyon"]
    assert "<tool_call>" not in got["content"][0]["text"]


def test_a_reply_without_a_call_ends_the_turn(api: TestClient) -> None:
    got = message(api, "talker")
    assert got["content"] == [{"type": "text", "text": "It is sunny in Paris."}]
    assert got["stop_reason"] == "end_turn"


def _received(client: TestClient, model: str) -> Any:
    return fake_backend(client, model).received[-1]


def test_tool_choice_tool_constrains_to_that_tools_input_schema(api: TestClient) -> None:
    got = message(api, "talker", tool_choice={"type": "tool", "name": "get_weather"})
    assert _received(api, "talker").constraint.schema == SCHEMA
    assert got["stop_reason"] == "tool_use"
    (block,) = got["content"]
    assert block["name"] == "get_weather"
    assert isinstance(block["input"], dict)  # the fake's own JSON for a constraint


def test_tool_choice_any_requires_calls_and_disable_parallel_allows_one(api: TestClient) -> None:
    api.post(MESSAGES, json=body("talker", tool_choice={"type": "any"}))
    many = _received(api, "talker").constraint.schema
    assert many["type"] == "array"
    assert many["items"]["anyOf"][0]["properties"]["name"] == {"const": "get_weather"}
    one_choice = {"type": "any", "disable_parallel_tool_use": True}
    api.post(MESSAGES, json=body("talker", tool_choice=one_choice))
    assert _received(api, "talker").constraint.schema == many["items"]


def test_tool_choice_none_gives_the_reply_as_text(api: TestClient) -> None:
    got = message(api, "caller", tool_choice={"type": "none"})
    assert got["stop_reason"] == "end_turn"
    assert got["content"] == [{"type": "text", "text": GENERIC_CALL}]


def test_tool_use_and_tool_result_blocks_reach_the_template(api: TestClient) -> None:
    got = message(api, "hermes", messages=HISTORY)
    assert got["stop_reason"] == "tool_use"
    prompt = _received(api, "hermes").prompt
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert call in prompt
    result = "<tool_response>\nError: service down\n</tool_response>"
    assert result in prompt
    # the tool result comes first, then the user's text in the same turn
    assert prompt.index(result) < prompt.index("Try to answer anyway.")


def test_count_tokens_counts_tool_use_and_results(api: TestClient) -> None:
    count = "/v1/messages/count_tokens"
    short = api.post(count, json={"model": "hermes", "messages": USER, "tools": [WEATHER]})
    long = api.post(count, json={"model": "hermes", "messages": HISTORY, "tools": [WEATHER]})
    assert long.json()["input_tokens"] > short.json()["input_tokens"] > 0


def test_a_call_arriving_in_argument_fragments_streams_as_input_json_deltas() -> None:
    with serve(tool_calling()) as up:
        model = {"id": "up", "url": up.base_url, "probe_interval_s": 0.05}
        settings = load_settings({"models": [model], "keys_file": "/nonexistent/k.json"})
        with open_client(settings, raise_server_exceptions=True) as client:
            whole = message(client, "up", tool_choice={"type": "tool", "name": "get_weather"})
            got = stream(client, "up")
        sent = up.requests[-1]["body"]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": SCHEMA,
            },
        }
    ]
    assert sent["tool_choice"] == "auto"
    assert up.requests[0]["body"]["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }
    expected = {"type": "tool_use", "id": "toolu_up1", "name": "get_weather"}
    assert whole["content"] == [{**expected, "input": {"city": "Paris"}}]
    assert whole["stop_reason"] == "tool_use"
    fragments = [
        d["delta"]["partial_json"]
        for n, d in got
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert fragments == ['{"city": ', '"Paris"}']
    assert ("content_block_start", {"type": "content_block_start", "index": 0,
            "content_block": {**expected, "input": {}}}) in got  # fmt: skip
    assert reassemble(got) == (whole["content"], "tool_use")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (
            {
                "messages": [
                    *USER,
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]},
                ]
            },
            "tool_use_id 'x' matches no tool_use block",
        ),
        ({"tool_choice": {"type": "tool", "name": "launch"}}, "tool_choice.name: 'launch'"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
        (
            {"tools": [{"name": "f", "input_schema": {"type": 12}}]},
            "tools.0.input_schema: tool 'f' parameters are not a valid JSON schema",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools.1.name: tool 'get_weather' is given twice"),
        (
            {
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}],
                    },
                    {"role": "user", "content": "go on"},
                ]
            },
            "messages.1.content.0.input",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t"}]}]},
            "messages.0.content.0: content blocks of type 'tool_use'",
        ),
        (
            {
                "messages": [
                    *HISTORY[:2],
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "toolu_1",
                                "content": [{"type": "image", "source": {}}],
                            }
                        ],
                    },
                ]
            },
            "messages.2.content.0.content.0",
        ),
    ],
)
def test_bad_tool_input_is_an_anthropic_400_naming_the_field(
    api: TestClient, extra: dict[str, Any], named: str
) -> None:
    resp = api.post(MESSAGES, json=body("talker", **extra))
    assert named in error_of(resp, 400, "invalid_request_error")


def test_a_conversation_ending_with_a_tool_use_is_a_prefill(api: TestClient) -> None:
    """A conversation ending with the assistant's tool_use (no result yet) is a prefill."""
    resp = api.post(MESSAGES, json=body("talker", messages=HISTORY[:2]))
    assert "prefill" in error_of(resp, 400, "invalid_request_error")


def test_a_call_cut_short_by_max_tokens_is_a_tool_use_with_empty_input(api: TestClient) -> None:
    # the fake tokenizer counts words: 8 tokens end inside the first call's arguments object
    got = message(api, "hermes", max_tokens=8)
    assert got["stop_reason"] == "max_tokens"
    (use,) = [block for block in got["content"] if block["type"] == "tool_use"]
    assert use["name"] == "get_weather"
    assert use["input"] == {}  # '{"city":' is no object
