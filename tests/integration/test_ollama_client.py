"""The official ``ollama`` package against a real server on the real default model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from llama_cpp import Llama

from llmserver.config.settings import (
    DEFAULT_EMBEDDING_MODEL_ID,
    DEFAULT_MODEL_ID,
    default_model_path,
)
from support import RunningServer, run_server

pytestmark = pytest.mark.integration

MODEL = f"{DEFAULT_MODEL_ID}:latest"
GREEDY = {"temperature": 0, "seed": 7, "num_predict": 8}
QUESTION = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> ollama.Client:
    return ollama.Client(host=default_server.url)


@pytest.fixture(scope="module")
def tokenizer() -> Llama:
    return Llama(str(default_model_path()), vocab_only=True, verbose=False)


def test_chat_streamed_equals_not_streamed_and_reports_engine_timings(
    client: ollama.Client,
) -> None:
    whole = client.chat(model=MODEL, messages=QUESTION, options=GREEDY)
    pieces = list(client.chat(model=MODEL, messages=QUESTION, options=GREEDY, stream=True))
    assert whole.message.role == "assistant"
    assert whole.message.content
    assert "".join(p.message.content or "" for p in pieces) == whole.message.content
    assert [p.done for p in pieces] == [False] * (len(pieces) - 1) + [True]
    final = pieces[-1]
    assert final.done_reason in ("stop", "length")
    for answer in (whole, final):
        assert answer.eval_count
        assert answer.prompt_eval_count
        assert answer.total_duration
        assert answer.prompt_eval_duration
        assert answer.eval_duration
        assert answer.load_duration == 0  # the model was warm
        assert answer.total_duration >= answer.prompt_eval_duration + answer.eval_duration
        assert answer.created_at is not None
        assert answer.created_at.endswith("Z")


def test_generate_streamed_equals_not_streamed_with_context(
    client: ollama.Client, tokenizer: Llama
) -> None:
    whole = client.generate(model=MODEL, prompt="The sky is", options=GREEDY)
    pieces = list(client.generate(model=MODEL, prompt="The sky is", options=GREEDY, stream=True))
    assert whole.response
    assert "".join(p.response or "" for p in pieces) == whole.response
    assert pieces[-1].done
    assert pieces[-1].context == whole.context
    # the context holds the rendered prompt's tokens followed by the answer's
    assert whole.context is not None
    decoded = tokenizer.detokenize(list(whole.context)).decode("utf-8", "replace")
    assert decoded.endswith(whole.response)
    assert "The sky is" in decoded


def test_raw_generate_continues_the_prompt_without_a_template(client: ollama.Client) -> None:
    raw = client.generate(model=MODEL, prompt="1, 2, 3, 4,", raw=True, options=GREEDY)
    templated = client.generate(model=MODEL, prompt="1, 2, 3, 4,", options=GREEDY)
    assert raw.context is None
    assert raw.response is not None
    assert raw.response.startswith(" 5")
    # the chat template adds its turn markers around the same prompt
    assert raw.prompt_eval_count is not None
    assert templated.prompt_eval_count is not None
    assert raw.prompt_eval_count < templated.prompt_eval_count


def test_num_predict_gives_exactly_that_many_tokens(client: ollama.Client) -> None:
    answer = client.generate(
        model=MODEL, prompt="Write a long story.", options={"num_predict": 5, "temperature": 0}
    )
    assert answer.eval_count == 5
    assert answer.done_reason == "length"
    chat = client.chat(model=MODEL, messages=QUESTION, options={"num_predict": 3.0})
    assert chat.eval_count == 3
    assert chat.done_reason == "length"


def test_num_ctx_caps_the_context_for_one_request(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model=MODEL, prompt="hello " * 40, options={"num_ctx": 16})
    assert caught.value.status_code == 400
    assert "maximum context length is 16" in caught.value.error


def test_format_json_parses(client: ollama.Client) -> None:
    answer = client.generate(
        model=MODEL,
        prompt="Give me a JSON object describing a cat.",
        format="json",
        options={"temperature": 0, "num_predict": 300},
    )
    assert answer.done_reason == "stop"
    assert isinstance(json.loads(answer.response or ""), dict)


def test_format_schema_validates(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 16},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    chat = client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "Invent a person."}],
        format=schema,
        options={"temperature": 0, "num_predict": 200},
    )
    data = json.loads(chat.message.content or "")
    assert set(data) == {"name", "age"}
    assert isinstance(data["name"], str)
    assert len(data["name"]) <= 16
    assert isinstance(data["age"], int)
    assert 0 <= data["age"] <= 120


def test_embed_and_legacy_embeddings(client: ollama.Client) -> None:
    models = {m.model for m in client.list().models}
    if f"{DEFAULT_EMBEDDING_MODEL_ID}:latest" not in models:
        pytest.skip("the embeddings extra is not installed")
    answer = client.embed(model=DEFAULT_EMBEDDING_MODEL_ID, input=["a cat", "a dog"])
    assert len(answer.embeddings) == 2
    assert len(answer.embeddings[0]) == 384
    assert answer.prompt_eval_count
    assert answer.prompt_eval_count > 2
    legacy = client.embeddings(model=DEFAULT_EMBEDDING_MODEL_ID, prompt="a cat")
    assert list(legacy.embedding) == pytest.approx(list(answer.embeddings[0]), abs=1e-5)


def test_list_show_ps_version(client: ollama.Client) -> None:
    listed = {m.model: m for m in client.list().models}
    entry = listed[MODEL]
    assert entry.details is not None
    assert entry.details.format == "gguf"
    assert entry.details.family == "llama"
    assert entry.details.quantization_level == "Q4_1"
    assert entry.details.parameter_size
    assert entry.details.parameter_size.endswith("M")
    path = default_model_path()
    assert path is not None
    assert entry.size == path.stat().st_size
    assert entry.digest
    assert len(entry.digest) == 64
    assert client.list().models[0].digest == entry.digest  # stable
    shown = client.show(MODEL)
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.template
    assert "im_start" in shown.template
    assert shown.capabilities == ["completion", "tools"]
    running = {m.model for m in client.ps().models}
    assert MODEL in running
    assert httpx.get(f"{client._client.base_url}/api/version").json()["version"]


def test_keep_alive_zero_unloads_and_an_empty_prompt_loads(client: ollama.Client) -> None:
    try:
        unloaded = client.generate(model=MODEL, keep_alive=0)
        assert unloaded.done_reason == "unload"
        assert MODEL not in {m.model for m in client.ps().models}
        with pytest.raises(ollama.ResponseError) as caught:
            client.generate(model=MODEL, prompt="hi")
        assert caught.value.status_code == 503
    finally:
        loaded = client.chat(model=MODEL, messages=[])
    assert loaded.done_reason == "load"
    assert MODEL in {m.model for m in client.ps().models}


def test_errors_come_in_ollama_shape(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="no-such-model", messages=QUESTION)
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'no-such-model' not found"
    with pytest.raises(ollama.ResponseError) as caught:
        client.delete(MODEL)
    assert caught.value.status_code == 400


def test_root_answers_ollama_clients_and_keeps_json_for_others(
    default_server: RunningServer,
) -> None:
    probe = httpx.get(default_server.url, headers={"User-Agent": "ollama-python/0.6.3"})
    assert probe.text == "Ollama is running"
    assert httpx.head(default_server.url).status_code == 200
    assert httpx.get(default_server.url).json()["name"] == "llmserver"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    tmp: Path = tmp_path_factory.mktemp("ollama-keys")
    keys = tmp / "keys.json"
    created = subprocess.run(
        [sys.executable, "-m", "llmserver", "keys", "create", "--name", "app",
         "--keys-file", str(keys)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = created.stdout.splitlines()[0].strip()
    with run_server(tmp, env={"LLMSERVER_KEYS_FILE": str(keys)}) as server:
        yield server, key


def test_a_key_in_client_headers_works_and_a_missing_one_is_refused(
    keyed_server: tuple[RunningServer, str],
) -> None:
    server, key = keyed_server
    keyed = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {key}"})
    answer = keyed.chat(model=MODEL, messages=QUESTION, options={"num_predict": 4})
    assert answer.eval_count == 4
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=server.url).chat(model=MODEL, messages=QUESTION)
    assert caught.value.status_code == 401
    raw = httpx.post(f"{server.url}/api/chat", json={"model": MODEL, "messages": QUESTION})
    assert set(raw.json()) == {"error"}
    assert isinstance(raw.json()["error"], str)
    # loading and unloading are admin operations
    with pytest.raises(ollama.ResponseError) as caught:
        keyed.generate(model=MODEL, keep_alive=0)
    assert caught.value.status_code == 403
