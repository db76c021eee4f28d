"""Tool calling with the official ``ollama`` package on the real default model (SmolLM2-135M
through llama.cpp), directly and through a second llmserver's Ollama upstream.

Ollama has no ``tool_choice``: every call is an ``auto`` call the model decides to make. The
135M model makes none for a bare question, but after a conversation that shows one call it
calls the tool again for a new city, which gives a real-model test of the ``auto`` path and a
full round trip (call, result, answer). The ``auto`` parsers on their own are tested on the
fake backend (``tests/unit/test_ollama_tools.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID
from support import RunningServer, run_server

pytestmark = pytest.mark.integration

MODEL = f"{DEFAULT_MODEL_ID}:latest"
GREEDY = {"temperature": 0, "seed": 7, "num_predict": 30}
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
SHOWN: list[Any] = [
    *ASK,
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    },
    {"role": "tool", "content": "18 degrees celsius, light rain", "tool_name": "get_weather"},
    {"role": "assistant", "content": "It is 18 degrees celsius with light rain in Paris."},
    {"role": "user", "content": "What is the weather in Rome?"},
]
RESULT = "25 degrees celsius, sunny"


def get_weather(city: str) -> str:
    """The weather forecast for a city.

    Args:
      city: the city's name
    """
    return "18 degrees celsius, light rain"


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> ollama.Client:
    return ollama.Client(host=default_server.url)


def answer(
    client: ollama.Client, model: str, messages: list[Any], options: Any = GREEDY
) -> tuple[Any, list[Any]]:
    """The non-streamed answer and the streamed pieces of the same request."""
    args: dict[str, Any] = {"model": model, "messages": messages, "tools": [get_weather]}
    whole = client.chat(**args, options=options)
    pieces = list(client.chat(**args, options=options, stream=True))
    return whole, pieces


def calls_of(pieces: list[Any]) -> list[Any]:
    return [c.function for p in pieces for c in p.message.tool_calls or []]


def test_the_model_calls_a_tool_and_the_stream_carries_the_same_call(
    client: ollama.Client,
) -> None:
    whole, pieces = answer(client, MODEL, SHOWN)
    ((call,),) = [whole.message.tool_calls]
    assert call.function.name == "get_weather"
    assert call.function.arguments == {"city": "Rome"}
    assert whole.message.content == ""
    assert whole.done_reason == "stop"  # as Ollama ends a reply that called tools
    assert calls_of(pieces) == [call.function]
    assert "".join(p.message.content or "" for p in pieces) == ""
    assert [p.done for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert pieces[-1].done_reason == "stop"


def test_a_full_round_trip_call_result_answer(client: ollama.Client) -> None:
    """The call, sent back as the client returned it, and the tool's result (by
    ``tool_name``) get an answer; sampled over a few seeds, as the small model sometimes
    calls again, and every answer streams as it collects."""
    first = client.chat(model=MODEL, messages=SHOWN, tools=[get_weather], options=GREEDY)
    assert first.message.tool_calls
    history = [
        *SHOWN,
        first.message.model_dump(exclude_none=True),
        {"role": "tool", "content": RESULT, "tool_name": "get_weather"},
    ]
    answered = 0
    for seed in range(6):
        options = {"temperature": 0.8, "seed": seed, "num_predict": 40}
        whole, pieces = answer(client, MODEL, history, options)
        assert "".join(p.message.content or "" for p in pieces) == whole.message.content
        assert calls_of(pieces) == [c.function for c in whole.message.tool_calls or []]
        assert "tool_call" not in (whole.message.content or "")
        if whole.message.content and not whole.message.tool_calls:
            answered += 1
    assert answered >= 1


def test_a_tool_message_for_no_call_is_a_clear_400(client: ollama.Client) -> None:
    bad = [*ASK, {"role": "tool", "content": "x", "tool_name": "get_weather"}]
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model=MODEL, messages=bad, tools=[get_weather])
    assert caught.value.status_code == 400
    assert "tool_name 'get_weather' answers no earlier tool call" in caught.value.error


@pytest.fixture(scope="module")
def front(
    default_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ollama.Client]:
    """A second llmserver whose model is the first one's, spoken to as Ollama."""
    tmp: Path = tmp_path_factory.mktemp("ollama-tools-front")
    entry = {
        "id": "via-ollama",
        "backend": "ollama",
        "url": default_server.url,
        "upstream_model": MODEL,
        "context_size": 1024,
    }
    with run_server(tmp, {"models": [entry]}) as server:
        yield ollama.Client(host=server.url)


def test_an_ollama_upstream_gets_the_tools_and_relays_the_call(
    client: ollama.Client, front: ollama.Client
) -> None:
    direct, _ = answer(client, MODEL, SHOWN)
    relayed, pieces = answer(front, "via-ollama", SHOWN)
    assert direct.message.tool_calls
    assert [c.function for c in relayed.message.tool_calls or []] == [
        c.function for c in direct.message.tool_calls
    ]
    assert calls_of(pieces) == [c.function for c in direct.message.tool_calls]
    assert relayed.done_reason == "stop"
