"""JSON-schema output and forced tool calls on the real default model (SmolLM2-135M through
llama.cpp), with the official ``openai`` package: every answer parses, strings hold no raw
control characters, and numbers stay inside their schema's bounds."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from support import RunningServer

pytestmark = pytest.mark.integration

JOKE = {
    "type": "object",
    "properties": {"setup": {"type": "string"}, "punchline": {"type": "string"}},
    "required": ["setup", "punchline"],
}
BOUNDED = {
    "type": "object",
    "properties": {
        "value": {"type": "integer", "exclusiveMinimum": -1000, "exclusiveMaximum": 1000},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["value", "ratio"],
}
SEEDS = range(12)


class Joke(BaseModel):
    """A joke, as ``chat.completions.parse`` reads it."""

    setup: str
    punchline: str


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_server.base_url, api_key="unused", max_retries=0)


def joke_format() -> Any:
    return {"type": "json_schema", "json_schema": {"name": "joke", "schema": JOKE}}


@pytest.mark.parametrize("seed", SEEDS)
def test_json_schema_answers_always_parse(client: openai.OpenAI, seed: int) -> None:
    reply = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Tell me a long joke about a cat named Seth."}],
        response_format=joke_format(),
        temperature=1.0,
        seed=seed,
        max_tokens=120,
    )
    text = reply.choices[0].message.content or ""
    if reply.choices[0].finish_reason == "stop":
        jsonschema.validate(json.loads(text), JOKE)  # raw line feeds would fail here
    assert not any(ord(c) < 0x20 for c in _string_values(text)), text


def _string_values(text: str) -> str:
    """The characters inside JSON strings of ``text`` (which may be cut short)."""
    inside, escaped, out = False, False, []
    for c in text:
        if inside and not escaped and c == '"':
            inside = False
        elif inside:
            out.append(c)
            escaped = c == "\\" and not escaped
        elif c == '"':
            inside = True
    return "".join(out)


def test_parse_helper_reads_a_json_schema_answer(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Tell me a joke about a cat named Seth."}],
        response_format=Joke,
        temperature=0.8,
        seed=3,
        max_tokens=200,
    )
    joke = completion.choices[0].message.parsed
    assert isinstance(joke, Joke)
    assert joke.setup or joke.punchline


@pytest.mark.parametrize("seed", SEEDS)
def test_forced_call_numbers_stay_inside_their_bounds(client: openai.OpenAI, seed: int) -> None:
    tool: Any = {
        "type": "function",
        "function": {"name": "record", "description": "Record a reading", "parameters": BOUNDED},
    }
    reply = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Record the value 123456789 with ratio 42.5."}],
        tools=[tool],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=1.0,
        seed=seed,
        max_tokens=100,
    )
    assert reply.choices[0].finish_reason == "tool_calls", reply
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.type == "function"
    jsonschema.validate(json.loads(call.function.arguments), BOUNDED)


def test_a_fractional_number_bound_is_a_400_naming_the_field(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "number", "maximum": 0.5}}}
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "hi"}],
            response_format=response_format,
            max_tokens=5,
        )
    assert "maximum 0.5" in err.value.message
    assert err.value.param == "response_format.json_schema.schema"
