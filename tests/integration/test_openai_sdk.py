"""The official ``openai`` client against a real server on the real default model."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from llama_cpp import Llama
from openai.types.chat import ChatCompletionMessageParam

from llmserver.config.settings import (
    DEFAULT_EMBEDDING_MODEL_ID,
    DEFAULT_MODEL_ID,
    default_model_path,
)
from support import RunningServer

pytestmark = pytest.mark.integration

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def aclient(default_server: RunningServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=default_server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def tokenizer() -> Llama:
    """The same GGUF loaded vocab-only, to count tokens independently of the server."""
    return Llama(str(default_model_path()), vocab_only=True, verbose=False)


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    # the default embedding model is listed after the chat model when its extra is installed
    assert ids in ([DEFAULT_MODEL_ID], [DEFAULT_MODEL_ID, DEFAULT_EMBEDDING_MODEL_ID])
    assert client.models.retrieve(DEFAULT_MODEL_ID).id == DEFAULT_MODEL_ID


def test_stream_equals_non_stream(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model=DEFAULT_MODEL_ID, messages=QUESTION, temperature=0, seed=42, max_tokens=40
    )
    pieces = []
    finish = []
    usage = None
    stream = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=QUESTION,
        temperature=0,
        seed=42,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert len(pieces) > 5, "streaming should arrive token by token"
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == [whole.choices[0].finish_reason]
    assert usage is not None
    assert whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_usage_matches_tokenizer(client: openai.OpenAI, tokenizer: Llama) -> None:
    resp = client.chat.completions.create(
        model=DEFAULT_MODEL_ID, messages=QUESTION, temperature=0, max_tokens=200
    )
    assert resp.usage is not None
    text = resp.choices[0].message.content or ""
    # the prompt, rendered by the model's own template, counted by the model's own tokenizer
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = tokenizer.metadata["tokenizer.chat_template"]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    prompt = env.from_string(template).render(messages=QUESTION, add_generation_prompt=True)
    assert resp.usage.prompt_tokens == len(tokenizer.tokenize(prompt.encode(), special=True))
    assert resp.choices[0].finish_reason == "stop"
    generated = tokenizer.tokenize(text.encode(), add_bos=False)
    # detokenize/retokenize may merge a token at most here and there; the count is the real one
    assert abs(resp.usage.completion_tokens - len(generated)) <= 2


def test_max_tokens_gives_length_with_exact_count(client: openai.OpenAI) -> None:
    for limit in (1, 7):
        resp = client.chat.completions.create(
            model=DEFAULT_MODEL_ID,
            messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            temperature=0,
            max_tokens=limit,
        )
        assert resp.choices[0].finish_reason == "length"
        assert resp.usage is not None
        assert resp.usage.completion_tokens == limit


def test_stop_string(client: openai.OpenAI) -> None:
    kwargs = {"model": DEFAULT_MODEL_ID, "messages": QUESTION, "temperature": 0, "max_tokens": 40}
    whole = client.chat.completions.create(**kwargs).choices[0].message.content or ""  # type: ignore[call-overload]
    words = whole.split()
    assert len(words) > 3
    stop = words[2]
    cut = client.chat.completions.create(stop=[stop], **kwargs)  # type: ignore[call-overload]
    text = cut.choices[0].message.content or ""
    assert cut.choices[0].finish_reason == "stop"
    assert text == whole[: whole.index(stop)]


def test_json_mode_output_parses(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=[{"role": "user", "content": "Give me a JSON object describing a cat."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=300,
    )
    assert resp.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)


def test_json_schema_output_matches(client: openai.OpenAI) -> None:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    resp = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
        temperature=0,
        max_tokens=200,
    )
    data = json.loads(resp.choices[0].message.content or "")
    assert isinstance(data["name"], str)
    assert isinstance(data["age"], int)


def test_completions(client: openai.OpenAI) -> None:
    resp = client.completions.create(
        model=DEFAULT_MODEL_ID, prompt="The sky is", max_tokens=5, temperature=0
    )
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 5
    streamed = client.completions.create(
        model=DEFAULT_MODEL_ID, prompt="The sky is", max_tokens=5, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == resp.choices[0].text


async def test_async_client_concurrent(aclient: openai.AsyncOpenAI) -> None:
    import asyncio

    async def one(i: int) -> str:
        resp = await aclient.chat.completions.create(
            model=DEFAULT_MODEL_ID,
            messages=[{"role": "user", "content": f"Count to {i}."}],
            temperature=0,
            max_tokens=12,
        )
        return resp.choices[0].message.content or ""

    texts = await asyncio.gather(*(one(i) for i in range(3, 7)))
    assert all(texts)
    stream = await aclient.chat.completions.create(
        model=DEFAULT_MODEL_ID, messages=QUESTION, max_tokens=8, stream=True
    )
    chunks = [c async for c in stream]
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_sdk_sees_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=QUESTION, temperature=3)
    assert bad.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model=DEFAULT_MODEL_ID, messages=[{"role": "user", "content": "word " * 9000}]
        )
    assert too_long.value.code == "context_length_exceeded"


def test_raw_error_cases(default_server: RunningServer) -> None:
    url = f"{default_server.base_url}/chat/completions"
    cases = [
        (b"{not json", None),
        (b"[]", None),
        (json.dumps({"messages": []}).encode(), "messages"),
        (
            json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(),
            "messages[0].role",
        ),
        (json.dumps({"messages": QUESTION, "max_tokens": 0}).encode(), "max_tokens"),
    ]
    for body, param in cases:
        resp = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == param
        assert "Traceback" not in resp.text
