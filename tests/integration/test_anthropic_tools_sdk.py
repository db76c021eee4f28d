"""Tool use with the official ``anthropic`` package on the real default model (SmolLM2-135M
through llama.cpp): forced calls (``tool_choice`` ``tool`` and ``any``) whose input validates
against the schema, a stream that accumulates to the same message, and a full round trip."""

from __future__ import annotations

from typing import Any

import anthropic
import jsonschema
import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID
from support import RunningServer
from support.tools import ANTHROPIC_SCHEMAS as SCHEMAS
from support.tools import ANTHROPIC_TOOLS as TOOLS
from support.tools import ASK
from support.tools import CITY_UNIT_PARAMS as WEATHER_SCHEMA

pytestmark = pytest.mark.integration

NAMED: Any = {"type": "tool", "name": "get_weather"}


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=default_server.url, api_key="unused", max_retries=0)


def ask(client: anthropic.Anthropic, temperature: float, **kwargs: Any) -> anthropic.types.Message:
    """A message; version 2 of the package has no sampling arguments (``extra_body``), and
    Anthropic's API no seed, so sampled answers differ from one request to the next."""
    args: dict[str, Any] = {"model": DEFAULT_MODEL_ID, "max_tokens": 200, "messages": ASK}
    sampling = {"temperature": temperature}
    message: anthropic.types.Message = client.messages.create(
        **{**args, "tools": TOOLS, **kwargs}, extra_body=sampling
    )
    return message


def uses(message: anthropic.types.Message) -> list[tuple[str, Any]]:
    return [(b.name, b.input) for b in message.content if b.type == "tool_use"]


@pytest.mark.parametrize("attempt", range(4))
def test_tool_choice_tool_always_gives_a_valid_call(
    client: anthropic.Anthropic, attempt: int
) -> None:
    message = ask(client, 1.0, tool_choice=NAMED)
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["tool_use"]
    ((name, args),) = uses(message)
    assert name == "get_weather"
    jsonschema.validate(args, WEATHER_SCHEMA)
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")


@pytest.mark.parametrize("attempt", range(3))
def test_tool_choice_any_always_gives_valid_calls(
    client: anthropic.Anthropic, attempt: int
) -> None:
    message = ask(client, 1.0, tool_choice={"type": "any"}, max_tokens=300)
    assert message.stop_reason == "tool_use"
    calls = uses(message)
    assert calls
    for name, args in calls:
        jsonschema.validate(args, SCHEMAS[name])
    one = ask(client, 1.0, tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert len(uses(one)) == 1


@pytest.mark.parametrize("tool_choice", [NAMED, {"type": "any"}])
def test_the_stream_accumulates_to_the_same_message(
    client: anthropic.Anthropic, tool_choice: Any
) -> None:
    whole = ask(client, 0, tool_choice=tool_choice, max_tokens=300)
    args: dict[str, Any] = {"model": DEFAULT_MODEL_ID, "max_tokens": 300, "messages": ASK}
    kinds = []
    with client.messages.stream(
        **args, tools=TOOLS, tool_choice=tool_choice, extra_body={"temperature": 0}
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        streamed = stream.get_final_message()
    assert "input_json_delta" in kinds
    assert streamed.stop_reason == whole.stop_reason == "tool_use"
    assert uses(streamed) == uses(whole)
    assert [b.type for b in streamed.content] == [b.type for b in whole.content]


def test_a_round_trip_call_result_answer(client: anthropic.Anthropic) -> None:
    first = ask(client, 0, tool_choice=NAMED)
    call = first.content[0]
    assert call.type == "tool_use"
    history: list[Any] = [
        *ASK,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees, rain"}
            ],
        },
    ]
    final = client.messages.create(
        model=DEFAULT_MODEL_ID,
        max_tokens=40,
        messages=history,
        tools=TOOLS,
        tool_choice={"type": "none"},
        extra_body={"temperature": 0},
    )
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].type == "text"
    assert final.content[0].text
    # count_tokens renders the prompt as the chat did: tools, the call and its result
    none: Any = {"type": "none"}
    counted = client.messages.count_tokens(
        model=DEFAULT_MODEL_ID, messages=history, tools=TOOLS, tool_choice=none
    )
    assert counted.input_tokens == final.usage.input_tokens


def test_a_tool_result_for_no_call_is_a_clear_400(client: anthropic.Anthropic) -> None:
    bad: list[Any] = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=DEFAULT_MODEL_ID, max_tokens=10, messages=bad, tools=TOOLS)
    body: Any = caught.value.body
    message = body["error"]["message"]
    assert "tool_use_id 'toolu_x' matches no tool_use block" in message
