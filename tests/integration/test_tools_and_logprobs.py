"""Tool calling and logprobs with the official ``openai`` package on the real default model
(SmolLM2-135M through llama.cpp), directly and through a second llmserver."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from llama_cpp import Llama
from openai.types.chat import ChatCompletionTokenLogprob

from llmserver.config.settings import DEFAULT_MODEL_ID, default_model_path
from support import RunningServer, run_server
from support.tools import ASK, SCHEMAS, TOOLS, WEATHER_PARAMS

pytestmark = pytest.mark.integration

NAMED: Any = {"type": "function", "function": {"name": "get_weather"}}
SEEDS = range(8)


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_server.base_url, api_key="unused", max_retries=0)


def calls_of(message: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]


def reassemble(stream: Any) -> tuple[str, list[tuple[str, str, str]], str | None]:
    """Content, (id, name, arguments) per call and the finish reason of a streamed answer."""
    content, finish = "", None
    calls: dict[int, list[str]] = {}
    for chunk in stream:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for piece in choice.delta.tool_calls or []:
                if piece.index not in calls:
                    assert piece.id
                    assert piece.function
                    assert piece.function.name
                    calls[piece.index] = [piece.id, piece.function.name, ""]
                else:
                    assert piece.id is None
                calls[piece.index][2] += (piece.function.arguments or "") if piece.function else ""
            finish = choice.finish_reason or finish
    return content, [(i, n, a) for i, n, a in (calls[k] for k in sorted(calls))], finish


@pytest.mark.parametrize("seed", SEEDS)
def test_named_tool_choice_always_gives_a_valid_call(client: openai.OpenAI, seed: int) -> None:
    resp = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=ASK,
        tools=TOOLS,
        tool_choice=NAMED,
        seed=seed,
        temperature=1.0,
        max_tokens=200,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    ((name, args),) = calls_of(choice.message)
    assert name == "get_weather"
    jsonschema.validate(args, WEATHER_PARAMS)


@pytest.mark.parametrize("seed", SEEDS)
def test_required_tool_choice_always_gives_valid_calls(client: openai.OpenAI, seed: int) -> None:
    resp = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        seed=seed,
        temperature=1.0,
        max_tokens=300,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = calls_of(choice.message)
    assert calls
    for name, args in calls:
        jsonschema.validate(args, SCHEMAS[name])
    assert len({c.id for c in choice.message.tool_calls or []}) == len(calls)


@pytest.mark.parametrize("tool_choice", [NAMED, "required"])
def test_streamed_calls_equal_the_non_streamed_answer(
    client: openai.OpenAI, tool_choice: Any
) -> None:
    args: dict[str, Any] = {
        "model": DEFAULT_MODEL_ID,
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": tool_choice,
        "seed": 5,
        "temperature": 1.0,
        "max_tokens": 300,
    }
    whole = client.chat.completions.create(**args).choices[0]
    chunks = list(client.chat.completions.create(stream=True, **args))
    content, calls, finish = reassemble(chunks)
    assert finish == whole.finish_reason == "tool_calls"
    assert content == ""
    # the arguments arrive in fragments as they are generated, not in one piece per call
    fragments = [
        p
        for chunk in chunks
        for choice in chunk.choices
        for p in choice.delta.tool_calls or []
        if p.id is None and p.function and p.function.arguments
    ]
    assert len(fragments) > 2 * len(calls)
    assert [(n, a) for _, n, a in calls] == [
        (c.function.name, c.function.arguments) for c in whole.message.tool_calls or []
    ]


@pytest.mark.parametrize("tool_choice", [NAMED, "required"])
def test_each_streamed_chunk_holds_one_entry_per_call(
    client: openai.OpenAI, tool_choice: Any
) -> None:
    """OpenAI sends at most one ``delta.tool_calls`` entry per call index in a chunk; a client
    that reads ``tool_calls[0]`` of each chunk (instructor's partial streaming, the usual Node
    loop) must get the whole arguments."""
    args: dict[str, Any] = {
        "model": DEFAULT_MODEL_ID,
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": tool_choice,
        "parallel_tool_calls": False,
        "seed": 5,
        "temperature": 1.0,
        "max_tokens": 300,
    }
    whole = client.chat.completions.create(**args).choices[0]
    first_entries = ""
    for chunk in client.chat.completions.create(stream=True, **args):
        for choice in chunk.choices:
            entries = choice.delta.tool_calls or []
            assert len({e.index for e in entries}) == len(entries), entries
            if entries and entries[0].function and entries[0].function.arguments:
                first_entries += entries[0].function.arguments
    (call,) = whole.message.tool_calls or []
    assert first_entries == call.function.arguments
    json.loads(first_entries)


def test_parallel_tool_calls_false_gives_one_call(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        seed=3,
        temperature=1.0,
        max_tokens=200,
    )
    assert len(resp.choices[0].message.tool_calls or []) == 1


def test_round_trip_call_result_answer(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=ASK,
        tools=TOOLS,
        tool_choice=NAMED,
        seed=1,
        temperature=0,
        max_tokens=200,
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    messages: list[Any] = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees celsius, light rain"},
    ]
    final = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=messages,
        tools=TOOLS,
        tool_choice="none",
        temperature=0,
        max_tokens=40,
    )
    answer = final.choices[0]
    assert answer.message.tool_calls is None
    assert answer.message.content
    assert answer.finish_reason in ("stop", "length")


def test_unknown_tool_in_tool_choice_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=DEFAULT_MODEL_ID,
            messages=ASK,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "launch"}},
        )
    body: Any = info.value.body
    assert body["param"] == "tool_choice"


# -- logprobs ------------------------------------------------------------------------------


def test_greedy_tokens_are_their_own_top_logprob(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=[{"role": "user", "content": "Name three colours."}],
        temperature=0,
        max_tokens=24,
        logprobs=True,
        top_logprobs=5,
    )
    choice = resp.choices[0]
    assert choice.logprobs is not None
    content = choice.logprobs.content or []
    assert len(content) == resp.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == choice.message.content
    for item in content:
        assert len(item.top_logprobs) == 5
        assert item.top_logprobs[0].token == item.token
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob)
        assert item.logprob <= 0
        tops = [t.logprob for t in item.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert sum(math.exp(t) for t in tops) <= 1 + 1e-6
        assert bytes(item.bytes or []) == item.token.encode()


def test_streamed_logprobs_equal_the_non_streamed_ones(client: openai.OpenAI) -> None:
    args: dict[str, Any] = {
        "model": DEFAULT_MODEL_ID,
        "messages": [{"role": "user", "content": "Count to five."}],
        "temperature": 0,
        "max_tokens": 16,
        "logprobs": True,
        "top_logprobs": 2,
    }
    whole = client.chat.completions.create(**args).choices[0].logprobs
    streamed: list[ChatCompletionTokenLogprob] = []
    for chunk in client.chat.completions.create(stream=True, **args):
        for choice in chunk.choices:
            if choice.logprobs is not None:
                streamed += choice.logprobs.content or []
    assert whole is not None
    assert [(t.token, t.logprob) for t in streamed] == [
        (t.token, t.logprob) for t in whole.content or []
    ]


def test_completion_logprobs_match_a_solo_forward_pass(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    resp = client.completions.create(
        model=DEFAULT_MODEL_ID, prompt=prompt, temperature=0, max_tokens=8, logprobs=3
    )
    lp = resp.choices[0].logprobs
    assert lp is not None
    assert lp.tokens
    assert lp.token_logprobs
    assert lp.top_logprobs
    assert lp.text_offset is not None
    assert "".join(lp.tokens) == resp.choices[0].text
    assert all(len(top) == 3 for top in lp.top_logprobs)
    assert lp.text_offset[0] == 0
    # llama-cpp-python's own completion, one sequence with every position's logits
    solo = Llama(str(default_model_path()), n_ctx=256, logits_all=True, verbose=False)
    ref = solo.create_completion(prompt, temperature=0, max_tokens=8, logprobs=3)
    assert isinstance(ref, dict)  # not a stream
    ref_lp = ref["choices"][0]["logprobs"]
    assert ref_lp is not None
    assert lp.tokens == ref_lp["tokens"]
    assert lp.token_logprobs == pytest.approx(ref_lp["token_logprobs"], abs=0.05)


def test_completion_logprobs_stream(client: openai.OpenAI) -> None:
    tokens, offsets = [], []
    for chunk in client.completions.create(
        model=DEFAULT_MODEL_ID,
        prompt="One, two,",
        temperature=0,
        max_tokens=6,
        logprobs=1,
        stream=True,
    ):
        lp = chunk.choices[0].logprobs if chunk.choices else None
        if lp is not None:
            tokens += lp.tokens or []
            offsets += lp.text_offset or []
    assert len(tokens) == 6
    assert offsets == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]


# -- through a second llmserver ------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(
    default_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    model = {
        "id": "proxied",
        "url": default_server.base_url,
        "upstream_model": DEFAULT_MODEL_ID,
        "probe_interval_s": 0.2,
    }
    with run_server(tmp_path_factory.mktemp("tools-proxy"), {"models": [model]}) as server:
        yield openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_tools_through_an_upstream_llmserver(proxy: openai.OpenAI) -> None:
    args: dict[str, Any] = {
        "model": "proxied",
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": NAMED,
        "seed": 2,
        "temperature": 1.0,
        "max_tokens": 200,
    }
    whole = proxy.chat.completions.create(**args).choices[0]
    assert whole.finish_reason == "tool_calls"
    ((name, call_args),) = calls_of(whole.message)
    assert name == "get_weather"
    jsonschema.validate(call_args, WEATHER_PARAMS)
    content, calls, finish = reassemble(proxy.chat.completions.create(stream=True, **args))
    assert (content, finish) == ("", "tool_calls")
    assert [(n, a) for _, n, a in calls] == [
        (c.function.name, c.function.arguments) for c in whole.message.tool_calls or []
    ]
    call = (whole.message.tool_calls or [])[0]
    final = proxy.chat.completions.create(
        model="proxied",
        messages=[
            *ASK,
            whole.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=TOOLS,
        tool_choice="none",
        temperature=0,
        max_tokens=20,
    )
    assert final.choices[0].message.content


# -- a model whose template teaches the Hermes format (the config's chat_template) -------------

HERMES_TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "hermes_tools.jinja"
FEW_SHOT: list[Any] = [
    {"role": "user", "content": "Weather in Rome?"},
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
    {"role": "assistant", "content": "It is sunny in Rome."},
    {"role": "user", "content": "Weather in Oslo?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c2", "content": "snow"},
    {"role": "assistant", "content": "It is snowing in Oslo."},
    {"role": "user", "content": "Weather in Paris?"},
]
CITY_TOOL: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def hermes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    model = {
        "id": "hermes",
        "backend": "llamacpp",
        "path": str(default_model_path()),
        "chat_template": str(HERMES_TEMPLATE),
        # a long few-shot prompt on a shared two-core machine
        "inference_timeout_s": 900,
    }
    with run_server(tmp_path_factory.mktemp("hermes"), {"models": [model]}) as server:
        yield openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_auto_parses_the_models_own_hermes_calls(hermes: openai.OpenAI) -> None:
    """Over several seeds the model writes <tool_call> at least once; every answer streams as
    it collects, and no markup reaches the content."""
    called = 0
    for seed in range(6):
        args: dict[str, Any] = {
            "model": "hermes",
            "messages": FEW_SHOT,
            "tools": CITY_TOOL,
            "seed": seed,
            "temperature": 0.7,
            "max_tokens": 60,
        }
        whole = hermes.chat.completions.create(**args).choices[0]
        content, calls, finish = reassemble(hermes.chat.completions.create(stream=True, **args))
        assert content == (whole.message.content or "")
        assert "<tool_call>" not in content
        assert finish == whole.finish_reason
        assert [(n, a) for _, n, a in calls] == [
            (c.function.name, c.function.arguments) for c in whole.message.tool_calls or []
        ]
        if whole.message.tool_calls:
            called += 1
            assert whole.finish_reason == "tool_calls"
            for _, call_args in calls_of(whole.message):
                assert isinstance(call_args["city"], str)
    assert called >= 1


def test_required_on_a_hermes_template_validates(hermes: openai.OpenAI) -> None:
    for seed in range(4):
        choice = hermes.chat.completions.create(
            model="hermes",
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            seed=seed,
            temperature=1.0,
            max_tokens=300,
        ).choices[0]
        assert choice.finish_reason == "tool_calls"
        for name, call_args in calls_of(choice.message):
            jsonschema.validate(call_args, SCHEMAS[name])


#: the few-shot calls write "Rome" and "Oslo"; this schema only takes the names in capitals
CAPITALS = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["PARIS", "ROME", "OSLO"]}},
    "required": ["city"],
}
CAPITALS_TOOL: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": CAPITALS,
        },
    }
]


def test_auto_lazy_grammar_makes_a_started_call_valid(hermes: openai.OpenAI) -> None:
    """``auto`` on llama.cpp: once the model writes <tool_call>, the grammar from the tools'
    schemas takes over. The few-shot calls spell cities "Rome" and "Oslo", the schema takes only
    "PARIS" / "ROME" / "OSLO", so a call that validates shows the grammar at work (the model
    alone copies the examples: seen with this prompt). The arguments stream in pieces and join
    to the collected answer's string."""
    called = 0
    for seed in range(6):
        args: dict[str, Any] = {
            "model": "hermes",
            "messages": FEW_SHOT,
            "tools": CAPITALS_TOOL,
            "seed": seed,
            "temperature": 0.7,
            "max_tokens": 60,
        }
        whole = hermes.chat.completions.create(**args).choices[0]
        assert "<tool_call>" not in (whole.message.content or "")
        pieces = 0
        streamed: dict[int, str] = {}
        for chunk in hermes.chat.completions.create(stream=True, **args):
            for choice in chunk.choices:
                for piece in choice.delta.tool_calls or []:
                    fragment = (piece.function.arguments or "") if piece.function else ""
                    streamed[piece.index] = streamed.get(piece.index, "") + fragment
                    pieces += 1
        assert [streamed[i] for i in sorted(streamed)] == [
            c.function.arguments for c in whole.message.tool_calls or []
        ]
        if whole.message.tool_calls:
            called += 1
            assert whole.finish_reason == "tool_calls"
            assert pieces > 2 * len(whole.message.tool_calls)  # not one piece per call
            for _, call_args in calls_of(whole.message):
                jsonschema.validate(call_args, CAPITALS)
    assert called >= 1
