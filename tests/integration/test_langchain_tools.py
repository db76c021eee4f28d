"""LangChain's ``ChatOpenAI(...).bind_tools`` against a real server on the default model.

Only the chat call is used: LangChain's token counting would fetch tiktoken encodings from
the network, and nothing here calls it.
"""

from __future__ import annotations

import jsonschema
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_openai import ChatOpenAI

from llmserver.config.settings import DEFAULT_MODEL_ID
from support import RunningServer
from support.tools import CITY_UNIT_PARAMS as WEATHER_PARAMS
from support.tools import WEATHER_DESCRIPTION, openai_tool

pytestmark = pytest.mark.integration

WEATHER = openai_tool("get_weather", WEATHER_DESCRIPTION, WEATHER_PARAMS)


def llm(server: RunningServer, seed: int) -> ChatOpenAI:
    return ChatOpenAI(
        model=DEFAULT_MODEL_ID,
        base_url=server.base_url,
        api_key="unused",
        temperature=1.0,
        seed=seed,
        max_completion_tokens=200,
        max_retries=0,
    )


@pytest.mark.parametrize("seed", range(3))
def test_bind_tools_with_a_named_tool_gives_a_valid_call(
    default_server: RunningServer, seed: int
) -> None:
    bound = llm(default_server, seed).bind_tools([WEATHER], tool_choice="get_weather")
    ask = [HumanMessage("What is the weather in Paris, in celsius?")]
    message = bound.invoke(ask)
    (call,) = message.tool_calls
    assert call["name"] == "get_weather"
    assert call["id"]
    jsonschema.validate(call["args"], WEATHER_PARAMS)
    # streamed: LangChain joins the argument fragments into the same call
    chunks = list(bound.stream(ask))
    joined = chunks[0]
    for chunk in chunks[1:]:
        joined += chunk  # type: ignore[assignment]
    assert isinstance(joined, AIMessageChunk)
    assert [(c["name"], c["args"]) for c in joined.tool_calls] == [(call["name"], call["args"])]
