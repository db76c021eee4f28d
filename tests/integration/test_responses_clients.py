"""OpenAI's Responses API with the official ``openai`` package, the OpenAI Agents SDK and
(opt-in) the Codex CLI, on the real default model (SmolLM2-135M through llama.cpp): text, JSON
schema, a forced function call and its round trip, ``previous_response_id``, retrieve, delete,
the cancel of a background run; every stream accumulated as the ``openai`` package does it
(``get_final_response``) equals the stored response."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Literal

import agents
import jsonschema
import openai
import pytest
from openai.types.responses import Response
from pydantic import BaseModel

from llmserver.config.settings import DEFAULT_MODEL_ID
from support import RunningServer
from support.tools import CITY_UNIT_PARAMS

pytestmark = pytest.mark.integration

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": CITY_UNIT_PARAMS,
    "strict": False,
}
FORCED: Any = {"type": "function", "name": "get_weather"}
QUESTION = "What is the weather in Paris?"


class Answer(BaseModel):
    """A one-word answer the JSON schema holds the model to (so the reply ends by itself)."""

    answer: Literal["yes", "no"]


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_server.base_url, api_key="unused", max_retries=0)


def _plain(value: Any) -> Any:
    """A dumped response without the client-side fields of a parsed response."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("parsed", "parsed_arguments")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _same_as_stored(client: openai.OpenAI, streamed: Response) -> None:
    stored = client.responses.retrieve(streamed.id)
    assert _plain(streamed.model_dump(mode="json")) == _plain(stored.model_dump(mode="json"))


def test_text_response_is_stored_and_retrieved(client: openai.OpenAI) -> None:
    resp = client.responses.create(
        model=DEFAULT_MODEL_ID, input="Say hello.", instructions="Be brief.", max_output_tokens=12
    )
    assert resp.object == "response"
    assert resp.id.startswith("resp_")
    assert resp.status in ("completed", "incomplete")
    assert resp.output_text
    assert resp.output[0].type == "message"
    assert resp.usage is not None
    assert resp.usage.input_tokens > 0
    assert 0 < resp.usage.output_tokens <= 12
    if resp.status == "incomplete":
        assert resp.incomplete_details is not None
        assert resp.incomplete_details.reason == "max_output_tokens"
    assert client.responses.retrieve(resp.id) == resp
    items = client.responses.input_items.list(resp.id)
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [("message", "user")]


def test_json_schema_stream_accumulates_to_the_stored_response(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=DEFAULT_MODEL_ID,
        input="Is the sky blue? Answer in JSON.",
        text_format=Answer,
        max_output_tokens=200,
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.status == "completed"
    assert isinstance(final.output_parsed, Answer)
    _same_as_stored(client, final)


def test_forced_function_call_and_its_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=DEFAULT_MODEL_ID, input=QUESTION, tools=[WEATHER], tool_choice=FORCED
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert call.call_id
    jsonschema.validate(json.loads(call.arguments), CITY_UNIT_PARAMS)
    # continued by id: only the tool's output is sent
    answer: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}
    second = client.responses.create(
        model=DEFAULT_MODEL_ID,
        previous_response_id=first.id,
        input=[answer],
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=24,
    )
    assert second.previous_response_id == first.id
    assert second.output[0].type == "message"
    assert second.output_text
    # the same conversation sent whole, statelessly, reads the same prompt
    whole: Any = [
        {"role": "user", "content": QUESTION},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        answer,
    ]
    third = client.responses.create(
        model=DEFAULT_MODEL_ID,
        input=whole,
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=24,
        store=False,
    )
    assert second.usage is not None
    assert third.usage is not None
    assert third.usage.input_tokens == second.usage.input_tokens


def test_streamed_function_call_accumulates_to_the_stored_response(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=DEFAULT_MODEL_ID, input=QUESTION, tools=[WEATHER], tool_choice=FORCED
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output[0].type == "function_call"
    _same_as_stored(client, final)


def test_previous_response_id_carries_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=DEFAULT_MODEL_ID, input="My name is Ada.", max_output_tokens=8
    )
    alone = client.responses.input_tokens.count(model=DEFAULT_MODEL_ID, input="What is my name?")
    continued = client.responses.input_tokens.count(
        model=DEFAULT_MODEL_ID, input="What is my name?", previous_response_id=first.id
    )
    assert continued.input_tokens > alone.input_tokens > 0
    second = client.responses.create(
        model=DEFAULT_MODEL_ID,
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=8,
    )
    assert second.usage is not None
    assert second.usage.input_tokens == continued.input_tokens


def test_delete_and_unstored_responses_are_not_found(client: openai.OpenAI) -> None:
    resp = client.responses.create(model=DEFAULT_MODEL_ID, input="Hi", max_output_tokens=4)
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    unstored = client.responses.create(
        model=DEFAULT_MODEL_ID, input="Hi", max_output_tokens=4, store=False
    )
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_background_run_is_cancelled(client: openai.OpenAI) -> None:
    resp = client.responses.create(
        model=DEFAULT_MODEL_ID,
        input="Write a very long story about a lighthouse keeper.",
        background=True,
        max_output_tokens=4000,
    )
    assert resp.background
    assert resp.status in ("queued", "in_progress")
    cancelled = client.responses.cancel(resp.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(resp.id).status == "cancelled"


def test_logprobs_are_included_when_asked(client: openai.OpenAI) -> None:
    resp = client.responses.create(
        model=DEFAULT_MODEL_ID,
        input="Say hi.",
        max_output_tokens=4,
        include=["message.output_text.logprobs"],
        top_logprobs=2,
        store=False,
    )
    message = resp.output[0]
    assert message.type == "message"
    part = message.content[0]
    assert part.type == "output_text"
    assert part.logprobs
    assert all(len(lp.top_logprobs) == 2 for lp in part.logprobs)
    # a token may hold part of a character (its text is then U+FFFD): the bytes add up
    raw = b"".join(bytes(lp.bytes) for lp in part.logprobs)
    assert raw.decode(errors="replace") == part.text


def test_built_in_tools_are_refused_by_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model=DEFAULT_MODEL_ID, input="Search the web.", tools=[{"type": "web_search"}]
        )
    body: Any = caught.value.body
    assert body["param"] == "tools[0].type"


def _weather_agent(server: RunningServer, called: list[str]) -> Any:
    """An agent on the Agents SDK's default (Responses) model whose first turn must call its
    weather tool (the SDK resets the tool choice after the call, so the second turn answers)."""
    agents.set_tracing_disabled(True)  # traces would be sent to OpenAI

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        called.append(city)
        return "Sunny, 21 C"

    model = agents.OpenAIResponsesModel(
        DEFAULT_MODEL_ID,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0),
    )
    return agents.Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
        model=model,
        # greedy, and room to finish: the SDK takes a reply cut by max_tokens as an error
        model_settings=agents.ModelSettings(
            tool_choice="get_weather", temperature=0, max_tokens=1024
        ),
    )


def test_agents_sdk_runs_a_function_tool(default_server: RunningServer) -> None:
    called: list[str] = []
    result = agents.Runner.run_sync(_weather_agent(default_server, called), QUESTION, max_turns=3)
    assert called
    assert isinstance(result.final_output, str)
    assert len(result.raw_responses) >= 2  # the call, then the answer that read its output


async def test_agents_sdk_streams_a_run_with_a_function_tool(default_server: RunningServer) -> None:
    called: list[str] = []
    agent = _weather_agent(default_server, called)
    run = agents.Runner.run_streamed(agent, QUESTION, max_turns=3)
    kinds = [event.type async for event in run.stream_events()]
    assert called
    assert "raw_response_event" in kinds
    assert isinstance(run.final_output, str)
    assert len(run.raw_responses) >= 2


#: the Codex CLI's binary (``npm install @openai/codex`` puts it in ``node_modules/.bin``);
#: the test is opt-in because the package is not a Python dependency (docs/responses.md)
CODEX = os.environ.get("LLMSERVER_TEST_CODEX")
CODEX_CONFIG = """
model = "{model}"
model_provider = "llmserver"
# a built-in tool, which this server does not serve
web_search = "disabled"

# the sub-agent tools (served as a namespace) would take the prompt past the default model's
# 8,192-token context
[features]
multi_agent = false

[model_providers.llmserver]
name = "llmserver"
base_url = "{base_url}"
wire_api = "responses"
"""


@pytest.mark.skipif(CODEX is None, reason="set LLMSERVER_TEST_CODEX to the codex binary")
def test_codex_cli_runs_a_task(default_server: RunningServer, tmp_path: Path) -> None:
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    config = CODEX_CONFIG.format(model=DEFAULT_MODEL_ID, base_url=default_server.base_url)
    (home / "config.toml").write_text(config, encoding="utf-8")
    env = {**os.environ, "CODEX_HOME": str(home)}
    command = [str(CODEX), "exec", "--skip-git-repo-check", "Say hello."]
    done = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"POST /v1/responses" 200' in default_server.log()
    assert "tokens used" in done.stdout + done.stderr
