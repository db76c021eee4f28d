"""Reasoning end to end on the default GGUF model, through the official clients.

SmolLM2 has no thinking template, so the config gives it one in DeepSeek-R1's style: the
generation prompt ends with ``<think>\\n``, so whatever the model writes is its thought until
the server's budget ends it (the engine feeds ``</think>``), and the model then answers. The
transformers backend gets one test of its own (a second server, started for it only).
``ignore_eos`` keeps this small model from ending its reply right away, so each test sees a
thought of exactly the budget and then an answer. One server for the module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from llmserver.config.settings import default_model_path
from support import RunningServer, run_server
from support.batches import jsonl, read_lines, upload, wait_final

pytestmark = pytest.mark.integration

R1_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}"
)
BUDGET = 8
ANSWER_TOKENS = 6
USER: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
NO_EOS = {"ignore_eos": True, "temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    model = {
        "id": "r1",
        "backend": "llamacpp",
        "path": str(default_model_path()),
        "context_size": 1024,
        "max_concurrent": 2,
        "chat_template": R1_TEMPLATE,
        "reasoning": {"budget": BUDGET},
    }
    # markers that are control tokens (SmolLM2's <repo_name> and <file_sep>), as some models'
    # thinking tokens are: the engine must still write them out for the split
    control = {
        **model,
        "id": "ctl",
        "max_concurrent": 1,
        "chat_template": R1_TEMPLATE.replace("<think>", "<repo_name>"),
        "reasoning": {"format": "tags", "start": "<repo_name>", "end": "<file_sep>", "budget": 4},
    }
    config = {"models": [model, control]}
    with run_server(tmp_path_factory.mktemp("reasoning"), config) as running:
        yield running


@pytest.fixture(scope="module")
def end_tokens(server: RunningServer) -> int:
    """How many tokens the end marker the engine feeds is."""
    body = {"model": "r1", "content": "</think>", "add_special": False}
    return len(httpx.post(f"{server.url}/tokenize", json=body).json()["tokens"])


def _openai(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def _limit(end_tokens: int) -> int:
    return BUDGET + end_tokens + ANSWER_TOKENS


def test_openai_thought_has_the_budget_then_an_answer(
    server: RunningServer, end_tokens: int
) -> None:
    out = _openai(server).chat.completions.create(
        model="r1", messages=USER, max_tokens=_limit(end_tokens), extra_body=NO_EOS
    )
    message = out.choices[0].message.model_dump()
    assert message["reasoning_content"]
    assert message["content"]
    assert "</think>" not in message["content"] + message["reasoning_content"]
    assert out.usage is not None
    details = out.usage.completion_tokens_details
    assert details is not None
    # the thought ran its budget, then the end marker, then the answer
    assert details.reasoning_tokens == BUDGET + end_tokens
    assert out.usage.completion_tokens == _limit(end_tokens)
    assert out.choices[0].finish_reason == "length"


def test_openai_stream_joins_to_the_collected_reply(server: RunningServer, end_tokens: int) -> None:
    client = _openai(server)
    args: dict[str, Any] = {"model": "r1", "messages": USER, "max_tokens": _limit(end_tokens)}
    whole = client.chat.completions.create(**args, extra_body=NO_EOS).choices[0].message
    thought = answer = ""
    for chunk in client.chat.completions.create(**args, stream=True, extra_body=NO_EOS):
        if chunk.choices:
            delta = chunk.choices[0].delta.model_dump()
            thought += delta.get("reasoning_content") or ""
            answer += delta.get("content") or ""
    assert (thought, answer) == (whole.model_dump()["reasoning_content"], whole.content)


def test_responses_api_gives_the_thought_as_a_reasoning_item(
    server: RunningServer, end_tokens: int
) -> None:
    """The Responses API through the ``openai`` package: the thought is a ``reasoning`` item
    before the message, its tokens counted; the stream accumulates to the stored response."""
    client = _openai(server)
    args: dict[str, Any] = {
        "model": "r1",
        "input": USER[0]["content"],
        "max_output_tokens": _limit(end_tokens),
        "temperature": 0,
    }
    done = client.responses.create(**args)
    assert done.output[0].type == "reasoning"
    assert done.output[0].summary[0].text
    assert done.usage is not None
    assert done.usage.output_tokens_details.reasoning_tokens >= BUDGET
    with client.responses.stream(**args) as stream:
        final = stream.get_final_response()
    assert final.output[0].type == "reasoning"
    assert client.responses.retrieve(final.id).output == final.output
    off = client.responses.create(**args, reasoning={"effort": "none"})
    assert [item.type for item in off.output] == ["message"]


def test_markers_that_are_control_tokens_still_split(server: RunningServer) -> None:
    out = _openai(server).chat.completions.create(
        model="ctl", messages=USER, max_tokens=10, extra_body=NO_EOS
    )
    message = out.choices[0].message.model_dump()
    assert message["reasoning_content"]
    assert message["content"]
    assert "<file_sep>" not in message["content"] + message["reasoning_content"]
    assert out.usage is not None
    assert out.usage.completion_tokens_details is not None
    assert out.usage.completion_tokens_details.reasoning_tokens == 4 + 1  # one marker token


def test_json_mode_applies_after_the_thought(server: RunningServer) -> None:
    out = _openai(server).chat.completions.create(
        model="r1",
        messages=[{"role": "user", "content": "Give me a JSON object about Paris."}],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_object"},
    )
    message = out.choices[0].message.model_dump()
    assert message["reasoning_content"]  # free text, not JSON
    assert isinstance(json.loads(message["content"]), dict)


def test_a_thought_cut_by_max_tokens_is_all_thought(server: RunningServer) -> None:
    out = _openai(server).chat.completions.create(
        model="r1", messages=USER, max_tokens=4, extra_body=NO_EOS
    )
    message = out.choices[0].message.model_dump()
    assert out.choices[0].finish_reason == "length"
    assert message["content"] == ""
    assert message["reasoning_content"]
    assert out.usage is not None
    assert out.usage.completion_tokens_details is not None
    assert out.usage.completion_tokens_details.reasoning_tokens == 4
    streamed = _openai(server).chat.completions.create(
        model="r1",
        messages=USER,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=NO_EOS,
    )
    thought = answer = ""
    finish = None
    details = None
    for chunk in streamed:
        if chunk.usage is not None:
            details = chunk.usage.completion_tokens_details
        for choice in chunk.choices:
            delta = choice.delta.model_dump()
            thought += delta.get("reasoning_content") or ""
            answer += delta.get("content") or ""
            finish = choice.finish_reason or finish
    assert (thought, answer, finish) == (message["reasoning_content"], "", "length")
    assert details is not None
    assert details.reasoning_tokens == 4


def test_a_client_that_disconnects_mid_thought_frees_the_slot(server: RunningServer) -> None:
    body = {"model": "r1", "messages": USER, "max_tokens": 800, "stream": True,
            "reasoning_effort": "max", **NO_EOS}  # fmt: skip
    thought = 0
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{server.base_url}/chat/completions", json=body) as resp,
    ):
        for line in resp.iter_lines():
            if '"reasoning_content"' in line:
                thought += 1
            if thought >= 3:
                break  # gone while the model thinks
    assert thought >= 3
    in_use = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        in_use = httpx.get(server.url).json()["models"][0]["slots_in_use"]
        if in_use == 0:
            break
        time.sleep(0.05)
    assert in_use == 0


def test_n_choices_each_split(server: RunningServer, end_tokens: int) -> None:
    out = _openai(server).chat.completions.create(
        model="r1",
        messages=USER,
        n=2,
        seed=1,
        max_tokens=_limit(end_tokens),
        extra_body={"ignore_eos": True, "temperature": 1.0},
    )
    assert len(out.choices) == 2
    for choice in out.choices:
        message = choice.message.model_dump()
        assert message["reasoning_content"]
        assert message["content"]
    assert out.usage is not None
    assert out.usage.completion_tokens_details is not None
    assert out.usage.completion_tokens_details.reasoning_tokens == 2 * (BUDGET + end_tokens)


def test_reasoning_effort_none_answers_without_a_thought(server: RunningServer) -> None:
    out = _openai(server).chat.completions.create(
        model="r1", messages=USER, max_tokens=8, temperature=0, reasoning_effort="none"
    )
    message = out.choices[0].message.model_dump()
    assert message.get("reasoning_content") is None
    assert message["content"]


def test_ollama_client_reads_thinking(server: RunningServer, end_tokens: int) -> None:
    client = ollama.Client(host=server.url)
    options = {"num_predict": _limit(end_tokens), "temperature": 0, "ignore_eos": True}
    out = client.chat(model="r1", messages=USER, think=True, options=options)
    assert out.message.thinking
    assert out.message.content
    thinking = content = ""
    for part in client.chat(model="r1", messages=USER, think=True, options=options, stream=True):
        thinking += part.message.thinking or ""
        content += part.message.content or ""
    assert (thinking, content) == (out.message.thinking, out.message.content)
    gen = client.generate(model="r1", prompt="Hello", think=True, options=options)
    assert gen.thinking
    assert gen.response


def test_anthropic_client_reads_thinking_blocks(server: RunningServer, end_tokens: int) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    args: dict[str, Any] = {
        "model": "r1",
        "max_tokens": _limit(end_tokens),
        "messages": USER,
        "thinking": {"type": "enabled", "budget_tokens": BUDGET},
        "extra_body": NO_EOS,
    }
    out = client.messages.create(**args)
    blocks = [block.model_dump() for block in out.content]
    assert [block["type"] for block in blocks] == ["thinking", "text"]
    assert blocks[0]["thinking"]
    assert blocks[1]["text"]
    with client.messages.stream(**args) as stream:
        final = stream.get_final_message()
    streamed = [block.model_dump() for block in final.content]
    assert [block["type"] for block in streamed] == ["thinking", "text"]
    assert streamed[0]["thinking"] == blocks[0]["thinking"]
    assert streamed[1]["text"] == blocks[1]["text"]


def test_a_batch_line_carries_the_thought(server: RunningServer, end_tokens: int) -> None:
    client = _openai(server)
    body = {"model": "r1", "messages": USER, "max_tokens": _limit(end_tokens), **NO_EOS}
    line = {"custom_id": "r", "method": "POST", "url": "/v1/chat/completions", "body": body}
    file_id = upload(client, jsonl([line]))
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    final = wait_final(client, batch.id, timeout=300)
    assert final.status == "completed", final
    [result] = read_lines(client, final.output_file_id)
    message = result["response"]["body"]["choices"][0]["message"]
    assert message["reasoning_content"]
    assert message["content"]


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The same model and template run by the transformers backend."""
    pytest.importorskip("transformers")
    model = {
        "id": "r1-hf",
        "backend": "transformers",
        "path": str(default_model_path()),
        "chat_template": R1_TEMPLATE,
        "reasoning": {"budget": BUDGET},
    }
    config = {"models": [model]}
    with run_server(tmp_path_factory.mktemp("hf"), config, ready_timeout=600) as running:
        yield running


def test_transformers_budgets_the_thought_and_constrains_only_the_answer(
    hf_server: RunningServer, end_tokens: int
) -> None:
    client = _openai(hf_server)
    out = client.chat.completions.create(
        model="r1-hf", messages=USER, max_tokens=_limit(end_tokens), extra_body=NO_EOS
    )
    message = out.choices[0].message.model_dump()
    assert message["reasoning_content"]
    assert message["content"]
    assert out.usage is not None
    assert out.usage.completion_tokens_details is not None
    # the same tokenizer: the same end marker tokens as the GGUF's
    assert out.usage.completion_tokens_details.reasoning_tokens == BUDGET + end_tokens
    constrained = client.chat.completions.create(
        model="r1-hf",
        messages=USER,
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_object"},
    )
    message = constrained.choices[0].message.model_dump()
    assert message["reasoning_content"]
    assert isinstance(json.loads(message["content"]), dict)
