"""Hostile input through the real models: the default SmolLM2 model through llama.cpp and the
bundled embedding model through sentence-transformers, on a real server.

An unpaired UTF-16 surrogate (``"\\ud800"``, which JSON allows) is read as U+FFFD wherever JSON
arrives, so no tokenizer, store or log line ever sees one; every route, streamed and not, and a
batch line serve it. The fuzz target throws the fake-backend fuzz test's bodies at the real
models, a few per route (generation is real, so the count is kept small for CI;
``LLMSERVER_FUZZ_EXAMPLES=80`` runs more).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmserver.config.settings import default_embedding_configs, default_model_path
from support import RunningServer, run_server
from support.batches import read_lines, upload, wait_final
from support.fuzz import ROUTES, body, check_answer

pytestmark = pytest.mark.integration

CHAT, EMBED = "smol", "all-minilm-l6-v2"
LONE = '"a\\ud800b\\udfffc"'  # a lone high and a lone low surrogate, as JSON text
USER = f'[{{"role":"user","content":{LONE}}}]'

#: (route, body) with the surrogate in the field each route reads text from
SURROGATE_BODIES = [
    ("/v1/chat/completions", f'{{"model":"{CHAT}","max_tokens":4,"messages":{USER}}}'),
    ("/v1/chat/completions", f'{{"model":"{CHAT}","max_tokens":4,"stream":true,'
                             f'"messages":{USER}}}'),
    ("/v1/chat/completions", f'{{"model":"{CHAT}","max_tokens":4,"stop":[{LONE}],"user":{LONE},'
                             f'"messages":[{{"role":"user","name":{LONE},"content":"hi"}}]}}'),
    ("/v1/completions", f'{{"model":"{CHAT}","max_tokens":4,"prompt":{LONE}}}'),
    ("/v1/completions", f'{{"model":"{CHAT}","max_tokens":4,"stream":true,"prompt":[{LONE}]}}'),
    ("/v1/embeddings", f'{{"model":"{EMBED}","input":[{LONE},"b"]}}'),
    ("/v1/messages", f'{{"model":"{CHAT}","max_tokens":4,"system":{LONE},"messages":{USER}}}'),
    ("/v1/messages", f'{{"model":"{CHAT}","max_tokens":4,"stream":true,"messages":{USER}}}'),
    ("/v1/messages/count_tokens", f'{{"model":"{CHAT}","messages":{USER}}}'),
    ("/api/chat", f'{{"model":"{CHAT}","stream":false,"options":{{"num_predict":4}},'
                  f'"messages":{USER}}}'),
    ("/api/chat", f'{{"model":"{CHAT}","options":{{"num_predict":4}},"messages":{USER}}}'),
    ("/api/generate", f'{{"model":"{CHAT}","stream":false,"options":{{"num_predict":4}},'
                      f'"prompt":{LONE}}}'),
    ("/api/embed", f'{{"model":"{EMBED}","input":{LONE}}}'),
    ("/api/embeddings", f'{{"model":"{EMBED}","prompt":{LONE}}}'),
    ("/tokenize", f'{{"model":"{CHAT}","prompt":{LONE}}}'),
    ("/tokenize", f'{{"model":"{CHAT}","messages":{USER}}}'),
    ("/infer", f'{{"query":{LONE},"max_length":4}}'),
    ("/infer/stream", f'{{"query":{LONE},"max_length":4}}'),
    ("/generate", f'{{"model":"{CHAT}","prompt":{LONE},"max_tokens":4}}'),
    ("/chat", f'{{"model":"{CHAT}","prompt":{LONE},"max_tokens":4}}'),
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default model with a small context and ``n`` of at most 2, so a fuzzed body that
    is valid generates for a few seconds at most; the embedding model beside it."""
    config = {
        "default_model": CHAT,
        "max_n": 2,
        "models": [
            {"id": CHAT, "path": str(default_model_path()), "context_size": 384},
            *[m.model_dump(mode="json") for m in default_embedding_configs()],
        ],
    }
    with run_server(tmp_path_factory.mktemp("hostile"), config) as running:
        yield running
    assert "Traceback" not in running.log(), running.log()[-3000:]


def _post(server: RunningServer, route: str, text: str) -> httpx.Response:
    return httpx.post(
        server.url + route,
        content=text.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )


@pytest.mark.parametrize(("route", "text"), SURROGATE_BODIES)
def test_an_unpaired_surrogate_is_served_on_every_route(
    server: RunningServer, route: str, text: str
) -> None:
    resp = _post(server, route, text)
    assert resp.status_code == 200, resp.text
    assert "error" not in resp.text.lower()  # a stream that failed after its 200 says so
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_the_model_reads_the_replacement_character(server: RunningServer) -> None:
    """``a\\ud800b`` reaches the tokenizer as ``a\\ufffdb``: the same tokens."""
    lone = _post(server, "/tokenize", f'{{"model":"{CHAT}","prompt":"a\\ud800b"}}').json()
    replaced = _post(server, "/tokenize", f'{{"model":"{CHAT}","prompt":"a\\ufffdb"}}').json()
    assert lone["tokens"] == replaced["tokens"]


def test_a_batch_line_with_an_unpaired_surrogate_is_answered(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    line = (
        f'{{"custom_id":"lone","method":"POST","url":"/v1/chat/completions","body":'
        f'{{"model":"{CHAT}","max_tokens":4,"messages":{USER}}}}}\n'
    )
    file_id = upload(client, line.encode())
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = wait_final(client, batch.id, timeout=300)
    assert done.status == "completed", done
    (result,) = read_lines(client, done.output_file_id)
    assert result["custom_id"] == "lone"
    assert result["response"]["status_code"] == 200


@pytest.mark.parametrize("route", sorted(ROUTES))
@settings(
    max_examples=int(os.environ.get("LLMSERVER_FUZZ_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_fuzzed_body_makes_a_real_model_answer_5xx(
    server: RunningServer, route: str, data: st.DataObject
) -> None:
    text = data.draw(body(ROUTES[route], [CHAT, EMBED]), label="body")
    resp = _post(server, route, text)
    check_answer(route, text, resp)
    assert "internal" not in resp.text.lower() or resp.status_code < 400, resp.text[:300]
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_strict_types_a_boolean_is_never_a_number(server: RunningServer) -> None:
    chat = {"model": CHAT, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    refused = _post(server, "/v1/chat/completions", json.dumps({**chat, "temperature": True}))
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "temperature"
    served = _post(server, "/v1/chat/completions", json.dumps({**chat, "temperature": 1}))
    assert served.status_code == 200
