"""Speculative decoding in a real server on the default model, through the ``openai`` and
``ollama`` packages: the answer is the one the same model gives without it, and the access log
and the metrics say how many guesses were made and kept."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from llmserver.config.settings import default_model_path
from support import RunningServer, run_server

pytestmark = pytest.mark.integration

JSON_COPY = (
    'Copy this JSON exactly: {"ticker": "AAPL", "headline": "Apple beats estimates", '
    '"price": 187.5, "tags": ["tech", "earnings"]}'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = {
        "backend": "llamacpp",
        "path": str(default_model_path()),
        "context_size": 1024,
        "max_concurrent": 2,
        "prefix_cache": False,
    }
    models = [
        {**base, "id": "spec", "speculative": {"method": "ngram", "max_tokens": 6}},
        {**base, "id": "plain", "flash_attn": True},
    ]
    with run_server(tmp_path_factory.mktemp("spec"), {"models": models}) as running:
        yield running


def chat(server: RunningServer, model: str) -> str:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    out = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": JSON_COPY}],
        max_tokens=60,
        temperature=0,
    )
    return out.choices[0].message.content or ""


def test_openai_answer_is_the_answer_without_speculation(server: RunningServer) -> None:
    assert chat(server, "spec") == chat(server, "plain")


def test_ollama_stream_is_the_answer_without_speculation(server: RunningServer) -> None:
    client = ollama.Client(host=server.url)
    messages = [{"role": "user", "content": JSON_COPY}]
    options = {"temperature": 0, "num_predict": 60}
    streamed = "".join(
        part.message.content or ""
        for part in client.chat(model="spec", messages=messages, options=options, stream=True)
    )
    whole = client.chat(model="plain", messages=messages, options=options)
    assert streamed == whole.message.content


def test_access_log_and_metrics_count_guesses(server: RunningServer) -> None:
    chat(server, "spec")
    lines = [line for line in server.log().splitlines() if "model=spec" in line]
    assert lines
    fields = re.search(r"draft_tokens=(\d+) accepted_tokens=(\d+)", lines[-1])
    assert fields is not None
    drafted, accepted = int(fields[1]), int(fields[2])
    assert 0 < accepted <= drafted
    plain = [line for line in server.log().splitlines() if "model=plain" in line]
    assert plain
    assert all("draft_tokens=- accepted_tokens=-" in line for line in plain)

    metrics = httpx.get(f"{server.url}/metrics").text

    def value(name: str, labels: str) -> float:
        found = re.search(rf"^{name}\{{{labels}\}} (\S+)$", metrics, re.MULTILINE)
        assert found is not None, (name, labels)
        return float(found[1])

    kept = value("llmserver_speculative_tokens_total", 'model="spec",outcome="accepted"')
    guessed = value("llmserver_speculative_tokens_total", 'model="spec",outcome="drafted"')
    steps = value("llmserver_decode_steps_total", 'model="spec"')
    tokens = value("llmserver_completion_tokens_total", 'model="spec"')
    assert 0 < kept <= guessed
    assert steps == tokens - kept  # every kept guess is a token without a step of its own
