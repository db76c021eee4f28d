"""The vLLM backend on a real GPU, through the official ``openai`` client against a real server.

Run on a CUDA machine with vLLM installed:
``pytest tests/gpu --vllm-model /models/Qwen2.5-0.5B-Instruct``.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support import RunningServer, run_server

pytestmark = [pytest.mark.gpu, pytest.mark.integration]

pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

MODEL = "gpu-model"
QUESTION = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, vllm_model: str) -> Iterator[RunningServer]:
    entry = {
        "id": MODEL,
        "backend": "vllm",
        "path": vllm_model,
        "max_model_len": 2048,
        "gpu_memory_utilization": 0.5,
        "max_num_seqs": 16,
        "max_concurrent": 16,
    }
    tmp = tmp_path_factory.mktemp("vllm")
    with run_server(tmp, {"models": [entry]}, ready_timeout=900) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)


def chat(client: openai.OpenAI, **extra: Any) -> Any:
    args: dict[str, Any] = {"model": MODEL, "messages": QUESTION, **extra}
    return client.chat.completions.create(**args)


def test_chat_and_exact_usage(client: openai.OpenAI, vllm_model: str) -> None:
    from transformers import AutoTokenizer

    resp = chat(client, temperature=0, max_tokens=16)
    assert resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 16
    tokenizer = AutoTokenizer.from_pretrained(vllm_model)
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    expected = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert resp.usage.prompt_tokens in (expected, expected + 1)  # +1: a BOS the template lacks


def test_stream_equals_non_stream(client: openai.OpenAI) -> None:
    whole = chat(client, temperature=0, max_tokens=32)
    pieces, usage = [], None
    for chunk in chat(
        client, temperature=0, max_tokens=32, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        pieces += [c.delta.content or "" for c in chunk.choices]
    assert len([p for p in pieces if p]) > 3
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_seed_reproduces_sampling(client: openai.OpenAI) -> None:
    one = chat(client, temperature=1.0, seed=1234, max_tokens=24)
    two = chat(client, temperature=1.0, seed=1234, max_tokens=24)
    assert one.choices[0].message.content == two.choices[0].message.content


def test_stop_string(client: openai.OpenAI) -> None:
    text = chat(client, temperature=0, max_tokens=24).choices[0].message.content or ""
    words = text.split()
    assert len(words) >= 3
    cut = chat(client, temperature=0, max_tokens=24, stop=[words[2]])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(words[2])]


def test_json_mode_parses(client: openai.OpenAI) -> None:
    resp = chat(
        client,
        temperature=0,
        max_tokens=200,
        messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        response_format={"type": "json_object"},
    )
    if resp.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)


def test_requests_run_concurrently(client: openai.OpenAI, server: RunningServer) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(chat, client, temperature=0.7, max_tokens=64) for _ in range(8)]
        results = [f.result() for f in futures]
    assert all(r.choices[0].message.content for r in results)
    assert httpx.get(server.url).json()["models"][0]["slots"] == 16


def test_disconnect_aborts_the_request(server: RunningServer) -> None:
    body = {
        "model": MODEL,
        "messages": QUESTION,
        "max_tokens": 1500,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=60) as r:
        for index, _ in enumerate(r.iter_lines()):
            if index >= 6:
                break
    deadline = time.monotonic() + 10
    in_use = 1
    while in_use and time.monotonic() < deadline:
        in_use = httpx.get(server.url).json()["models"][0]["slots_in_use"]
        time.sleep(0.05)
    assert in_use == 0, "the request kept its slot after the client left"


def test_greedy_logprobs_name_the_chosen_token(client: openai.OpenAI) -> None:
    """logprobs through vLLM: each greedy token is its own top alternative, streamed alike."""
    args: Any = {"temperature": 0, "max_tokens": 12, "logprobs": True, "top_logprobs": 3}
    resp = chat(client, **args)
    content = (resp.choices[0].logprobs.content or []) if resp.choices[0].logprobs else []
    assert "".join(t.token for t in content) == resp.choices[0].message.content
    for item in content:
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].token == item.token
        assert item.logprob <= 0
    streamed = [
        t
        for chunk in chat(client, stream=True, **args)
        for c in chunk.choices
        for t in ((c.logprobs.content or []) if c.logprobs else [])
    ]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]
