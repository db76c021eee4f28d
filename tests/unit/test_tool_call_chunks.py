"""Streamed tool calls carry at most one entry per call in a chunk (OpenAI's rule), so a
client that reads ``delta.tool_calls[0]`` of each chunk gets the whole arguments."""

from __future__ import annotations

import json
from typing import Any

from llmserver.backends.base import Delta, ToolCallDelta
from llmserver.core.generation import one_per_call
from support import fake_model, fake_settings, open_client, sse_events
from support.tools import WEATHER_QUESTION, WEATHER_TOOL


def test_pieces_of_one_call_are_joined_in_order() -> None:
    delta = Delta(
        "",
        tool_calls=(
            ToolCallDelta(0, arguments="}"),
            ToolCallDelta(1, "call_b", "add", ""),
            ToolCallDelta(1, arguments='{"a"'),
            ToolCallDelta(1, arguments=": 1"),
        ),
    )
    assert one_per_call(delta) == (
        ToolCallDelta(0, arguments="}"),
        ToolCallDelta(1, "call_b", "add", '{"a": 1'),
    )


def test_each_chunk_holds_one_entry_per_call_and_the_first_entries_add_up() -> None:
    settings = fake_settings(fake_model("named"))
    with open_client(settings) as client:
        body: dict[str, Any] = {
            "model": "named",
            "messages": WEATHER_QUESTION,
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }
        whole = client.post("/v1/chat/completions", json=body).json()
        resp = client.post("/v1/chat/completions", json={**body, "stream": True})
        assert resp.status_code == 200, resp.text
    first_entries = ""
    for data in sse_events(resp.text):
        if data == "[DONE]":
            continue
        for choice in json.loads(data)["choices"]:
            entries = choice["delta"].get("tool_calls") or []
            assert len({e["index"] for e in entries}) == len(entries), entries
            if entries:
                first_entries += entries[0]["function"].get("arguments", "")
    (call,) = whole["choices"][0]["message"]["tool_calls"]
    assert first_entries == call["function"]["arguments"]
    assert json.loads(first_entries)  # the fake answers a constraint with an object of its own
