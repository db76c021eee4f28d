"""The vLLM backend's own logic on a machine without vLLM: a stand-in ``vllm`` module records what
the backend asks of the engine and plays back cumulative outputs as vLLM's engine does.

What the real engine does with these calls is tested in ``tests/gpu/test_vllm.py``.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from llmserver.backends.base import GenerationRequest, JsonConstraint, SamplingParams
from llmserver.backends.vllm import VllmBackend, token_logprobs
from llmserver.config.model_configs import VllmConfig
from llmserver.config.settings import load_settings
from support import open_client, sse_events

REPLY = ["Red", ",", " green", " and", " blue", "."]


class FakeTokenizer:
    chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}<|a|>"
    bos_token = "<s>"
    eos_token = "</s>"

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = [ord(c) for c in text]
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


@dataclass
class FakeEngine:
    """Records engine args, sampling params and aborts; streams REPLY cumulatively."""

    args: Any
    calls: list[tuple[Any, Any, str]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    shut_down: bool = False
    model_config: Any = field(default_factory=lambda: types.SimpleNamespace(max_model_len=512))

    @classmethod
    def from_engine_args(cls, args: Any) -> FakeEngine:
        engine = cls(args)
        ENGINES.append(engine)
        return engine

    async def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    async def generate(self, prompt: Any, sampling: Any, request_id: str) -> AsyncIterator[Any]:
        self.calls.append((prompt, sampling, request_id))
        limit = sampling.kw["max_tokens"]
        text, ids, logprobs = "", [], []
        for i, piece in enumerate(REPLY[:limit], start=1):
            text += piece
            ids.append(100 + i)
            # vLLM: the chosen token and the k most likely ones, each with its rank
            logprobs.append(
                {
                    100 + i: types.SimpleNamespace(logprob=-0.5, rank=2, decoded_token=piece),
                    7: types.SimpleNamespace(logprob=-0.25, rank=1, decoded_token="é"),
                    8: types.SimpleNamespace(logprob=-3.0, rank=3, decoded_token=None),
                }
            )
            done = i == limit or i == len(REPLY)
            reason = None if not done else ("length" if i == limit else "stop")
            completion = types.SimpleNamespace(
                text=text,
                token_ids=list(ids),
                finish_reason=reason,
                logprobs=list(logprobs) if "logprobs" in sampling.kw else None,
            )
            yield types.SimpleNamespace(outputs=[completion], finished=done)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        self.shut_down = True


class Recorded:
    """Stands in for AsyncEngineArgs, SamplingParams and StructuredOutputsParams."""

    def __init__(self, **kw: Any) -> None:
        self.kw = kw


ENGINES: list[FakeEngine] = []


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> list[FakeEngine]:
    ENGINES.clear()
    vllm = types.ModuleType("vllm")
    vllm.AsyncEngineArgs = Recorded  # type: ignore[attr-defined]
    vllm.AsyncLLMEngine = FakeEngine  # type: ignore[attr-defined]
    vllm.SamplingParams = Recorded  # type: ignore[attr-defined]
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = Recorded  # type: ignore[attr-defined]
    vllm.sampling_params = sampling  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    return ENGINES


def config(**extra: Any) -> VllmConfig:
    return VllmConfig(id="v", path="org/model", **extra)


async def test_engine_options_pass_through(fake_vllm: list[FakeEngine]) -> None:
    backend = VllmBackend(
        config(
            tensor_parallel_size=4,
            pipeline_parallel_size=2,
            distributed_executor_backend="ray",
            quantization="awq",
            max_model_len=4096,
            gpu_memory_utilization=0.8,
            max_num_seqs=64,
            dtype="bfloat16",
            engine_args={"enable_prefix_caching": True},
        )
    )
    await backend.start()
    kw = fake_vllm[0].args.kw
    assert kw == {
        "model": "org/model",
        "tensor_parallel_size": 4,
        "pipeline_parallel_size": 2,
        "distributed_executor_backend": "ray",
        "quantization": "awq",
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.8,
        "max_num_seqs": 64,
        "dtype": "bfloat16",
        "trust_remote_code": False,
        "enforce_eager": False,
        "enable_prefix_caching": True,
    }
    fmt = backend.prompt_format()
    assert (fmt.context_length, fmt.bos_token, fmt.eos_token) == (512, "<s>", "</s>")
    assert backend.tokenize("<s>hi") == [ord(c) for c in "<s>hi"]  # BOS not doubled
    assert backend.tokenize("hi") == [1, ord("h"), ord("i")]
    await backend.close()
    assert fake_vllm[0].shut_down


async def test_sampling_maps_and_deltas_count_tokens(fake_vllm: list[FakeEngine]) -> None:
    backend = VllmBackend(config())
    await backend.start()
    params = SamplingParams(max_tokens=4, temperature=0, top_k=0, seed=7, stop=("x",))
    request = GenerationRequest("r1", "p", [1, 2, 3], params, JsonConstraint({"type": "object"}))
    deltas = [d async for d in backend.generate(request)]
    assert [d.text for d in deltas] == REPLY[:4]
    assert sum(d.tokens for d in deltas) == 4
    assert [d.finish_reason for d in deltas] == [None, None, None, "length"]
    prompt, sampling, request_id = fake_vllm[0].calls[0]
    assert prompt == {"prompt_token_ids": [1, 2, 3]}
    assert request_id == "v-r1"
    kw = sampling.kw
    assert (kw["temperature"], kw["top_k"], kw["seed"], kw["stop"]) == (0, -1, 7, ["x"])
    assert kw["max_tokens"] == 4
    assert kw["structured_outputs"].kw == {"json": {"type": "object"}}
    assert fake_vllm[0].aborted == []


async def test_consumer_leaving_aborts_the_request(fake_vllm: list[FakeEngine]) -> None:
    backend = VllmBackend(config())
    await backend.start()
    request = GenerationRequest("r2", "p", [1], SamplingParams(max_tokens=50))
    stream = backend.generate(request)
    first = await anext(stream)
    assert first.text == REPLY[0]
    await stream.aclose()  # type: ignore[attr-defined]
    assert fake_vllm[0].aborted == ["v-r2"]


def test_chat_through_the_server(fake_vllm: list[FakeEngine]) -> None:
    settings = load_settings({"models": [{"id": "v", "backend": "vllm", "path": "org/model"}]})
    with open_client(settings) as client:
        body = {"model": "v", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
        resp = client.post("/v1/chat/completions", json=body).json()
        assert resp["choices"][0]["message"]["content"] == "".join(REPLY)
        assert resp["choices"][0]["finish_reason"] == "stop"
        prompt = "<|user|>hi<|a|>"
        assert resp["usage"]["prompt_tokens"] == len(prompt) + 1
        assert resp["usage"]["completion_tokens"] == len(REPLY)
        card = client.get("/v1/models/v").json()
        assert (card["backend"], card["state"]) == ("vllm", "ready")


def test_logprobs_map_to_vllm_and_back(fake_vllm: list[FakeEngine]) -> None:
    """logprobs / top_logprobs become SamplingParams(logprobs=k); vLLM's per-step dicts come
    back in OpenAI's shape, streamed and not, the chosen token first among none (ranked by
    logprob), at most k alternatives. (The real engine is not run here: no GPU.)"""
    settings = load_settings({"models": [{"id": "v", "backend": "vllm", "path": "org/model"}]})
    with open_client(settings) as client:
        body = {
            "model": "v",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 50,
            "logprobs": True,
            "top_logprobs": 2,
        }
        resp = client.post("/v1/chat/completions", json=body).json()
        content = resp["choices"][0]["logprobs"]["content"]
        assert [t["token"] for t in content] == REPLY
        assert all(t["logprob"] == -0.5 for t in content)
        assert [[a["token"] for a in t["top_logprobs"]] for t in content] == [
            ["é", piece] for piece in REPLY
        ]
        assert content[0]["top_logprobs"][0]["bytes"] == list("é".encode())
        assert fake_vllm[0].calls[-1][1].kw["logprobs"] == 2
        events = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}).text)
        streamed = [
            t
            for e in events
            if e != "[DONE]"
            for c in json.loads(e)["choices"]
            for t in (c.get("logprobs") or {}).get("content") or []
        ]
        assert streamed == content
        plain_body = {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}
        plain = client.post("/v1/chat/completions", json=plain_body).json()
        assert plain["choices"][0]["logprobs"] is None
        assert "logprobs" not in fake_vllm[0].calls[-1][1].kw
        text = client.post(
            "/v1/completions", json={"model": "v", "prompt": "hi", "logprobs": 1}
        ).json()
        assert text["choices"][0]["logprobs"]["tokens"] == REPLY


def test_end_of_generation_token_is_not_listed() -> None:
    entry = {2: types.SimpleNamespace(logprob=-0.1, rank=1, decoded_token="")}
    word = {5: types.SimpleNamespace(logprob=-0.2, rank=1, decoded_token=None)}
    got = token_logprobs([5, 2], [word, entry], 0, FakeTokenizer(), eos=2)
    assert [(t.token, t.logprob, t.top) for t in got] == [(chr(5), -0.2, ())]
