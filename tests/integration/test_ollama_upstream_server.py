"""The Ollama upstream (``backend: ollama``) driven against another real llmserver's ``/api``
surface on the default model: the same protocol as Ollama, through a different code path. (No
real Ollama can be installed here; ``tests/unit/test_ollama_upstream.py`` replays responses
recorded from Ollama's documentation.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID
from support import RunningServer, free_port, run_server

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "Name three colours."}]
CONTEXT = 256


@pytest.fixture(scope="module")
def front(
    default_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A second llmserver whose only model is the first one's, spoken to as Ollama."""
    tmp: Path = tmp_path_factory.mktemp("ollama-front")
    entry = {
        "id": "via-ollama",
        "backend": "ollama",
        "url": default_server.url,
        "upstream_model": f"{DEFAULT_MODEL_ID}:latest",
        "context_size": CONTEXT,
        "keep_alive": "-1",
    }
    with run_server(tmp, {"models": [entry]}) as server:
        yield server


def test_answers_and_counts_match_the_engine_behind(
    front: RunningServer, default_server: RunningServer
) -> None:
    args = {"messages": QUESTION, "temperature": 0, "seed": 3, "max_tokens": 12}
    behind = openai.OpenAI(base_url=default_server.base_url, api_key="x", max_retries=0)
    direct = behind.chat.completions.create(model=DEFAULT_MODEL_ID, **args)  # type: ignore[call-overload]
    client = openai.OpenAI(base_url=front.base_url, api_key="x", max_retries=0)
    relayed = client.chat.completions.create(model="via-ollama", **args)  # type: ignore[call-overload]
    assert relayed.choices[0].message.content == direct.choices[0].message.content
    assert relayed.choices[0].finish_reason == direct.choices[0].finish_reason
    # the counts are Ollama's prompt_eval_count and eval_count from the engine behind; like
    # Ollama's, its prompt_eval_count leaves out what the prefix cache already held
    assert relayed.usage is not None
    assert direct.usage is not None
    assert 0 < relayed.usage.prompt_tokens <= direct.usage.prompt_tokens
    assert relayed.usage.completion_tokens == direct.usage.completion_tokens


def test_num_ctx_from_context_size_is_sent(front: RunningServer) -> None:
    # the engine behind has 8192 tokens; only the num_ctx sent with the request caps it
    r = httpx.post(
        f"{front.base_url}/chat/completions",
        json={"model": "via-ollama", "messages": [{"role": "user", "content": "word " * 300}]},
        timeout=60,
    )
    assert r.status_code == 400
    assert f"maximum context length is {CONTEXT}" in r.json()["error"]["message"]


def test_the_front_serves_ollamas_api_too(front: RunningServer) -> None:
    r = httpx.post(
        f"{front.url}/api/generate",
        json={"model": "via-ollama", "prompt": "Hi", "stream": False,
              "options": {"num_predict": 4}},
        timeout=60,
    )  # fmt: skip
    body = r.json()
    assert body["eval_count"] == 4
    assert body["done_reason"] == "length"


def test_an_unreachable_ollama_makes_ready_and_requests_503(tmp_path: Path) -> None:
    entry = {"id": "gone", "backend": "ollama", "url": f"http://127.0.0.1:{free_port()}"}
    with run_server(tmp_path, {"models": [entry]}, wait=False) as server:
        for _ in range(100):
            try:
                ready = httpx.get(f"{server.url}/ready", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready.status_code == 503
        r = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "gone", "messages": QUESTION},
            timeout=30,
        )
        assert r.status_code == 503
