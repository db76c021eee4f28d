"""Ollama's API on the fake backend: the field set and JSON type of every object Ollama's
``docs/api.md`` shows for these endpoints (fields ``api/types.go`` adds included), options as
Ollama reads them, and errors in Ollama's shape, also after a stream began."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.backends.base import Delta, GenerationRequest
from llmserver.errors import EngineError, InvalidRequestError
from llmserver.security.keys import create_key
from llmserver.surfaces.ollama import options
from support import fake_settings, open_client
from support.fake import fake_backend, handle

STR, INT, BOOL, LIST, DICT = str, int, bool, list, dict
NULLABLE_LIST = (list, type(None))

METRICS = {
    "total_duration": INT,
    "load_duration": INT,
    "prompt_eval_count": INT,
    "prompt_eval_duration": INT,
    "eval_count": INT,
    "eval_duration": INT,
}
HEAD = {"model": STR, "created_at": STR, "done": BOOL}
GENERATE_PIECE = {**HEAD, "response": STR}
GENERATE_FINAL = {**GENERATE_PIECE, "done_reason": STR, "context": LIST, **METRICS}
RAW_FINAL = {**GENERATE_PIECE, "done_reason": STR, **METRICS}
CHAT_PIECE = {**HEAD, "message": DICT}
CHAT_FINAL = {**CHAT_PIECE, "done_reason": STR, **METRICS}
CONTROL_GENERATE = {**GENERATE_PIECE, "done_reason": STR}
CONTROL_CHAT = {**CHAT_PIECE, "done_reason": STR}
MESSAGE = {"role": STR, "content": STR}
DETAILS = {
    "parent_model": STR,
    "format": STR,
    "family": STR,
    "families": NULLABLE_LIST,
    "parameter_size": STR,
    "quantization_level": STR,
}
TAG = {"name": STR, "model": STR, "modified_at": STR, "size": INT, "digest": STR, "details": DICT}
PS = {
    "name": STR,
    "model": STR,
    "size": INT,
    "digest": STR,
    "details": DICT,
    "expires_at": STR,
    "size_vram": INT,
    "context_length": INT,
}
SHOW = {
    "modelfile": STR,
    "parameters": STR,
    "template": STR,
    "details": DICT,
    "model_info": DICT,
    "capabilities": LIST,
    "modified_at": STR,
}
EMBED = {
    "model": STR,
    "embeddings": LIST,
    "total_duration": INT,
    "load_duration": INT,
    "prompt_eval_count": INT,
}


def assert_shape(obj: dict[str, Any], shape: dict[str, Any]) -> None:
    """Exactly these fields, each of its JSON type (a bool is not an int)."""
    assert set(obj) == set(shape), sorted(set(obj) ^ set(shape))
    for name, kind in shape.items():
        value = obj[name]
        assert isinstance(value, kind), (name, value)
        if kind is INT:
            assert not isinstance(value, bool), name


def lines(body: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line]


@pytest.fixture
def api() -> Iterator[TestClient]:
    settings = fake_settings(
        {"id": "fake", "backend": "fake", "aliases": ["f"]},
        {"id": "emb", "backend": "fake", "embedding_dimensions": 8},
        {"id": "lazy", "backend": "fake", "preload": False, "load_on_demand": True},
    )
    with open_client(settings) as c:
        yield c


def test_generate_stream_and_final_objects(api: TestClient) -> None:
    r = api.post("/api/generate", json={"model": "fake", "prompt": "hello"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    objs = lines(r.text)
    for piece in objs[:-1]:
        assert_shape(piece, GENERATE_PIECE)
        assert piece["done"] is False
    final = objs[-1]
    assert_shape(final, GENERATE_FINAL)
    assert final["done"] is True
    assert final["response"] == ""
    assert all(isinstance(t, int) for t in final["context"])
    whole = api.post("/api/generate", json={"model": "fake", "prompt": "hello", "stream": False})
    body = whole.json()
    assert_shape(body, GENERATE_FINAL)
    assert body["response"] == "".join(o["response"] for o in objs)
    assert body["eval_count"] == final["eval_count"]
    assert body["created_at"].endswith("Z")
    assert len(body["created_at"].split(".")[1]) == 10


def test_raw_generate_has_no_context(api: TestClient) -> None:
    body = api.post(
        "/api/generate", json={"model": "fake", "prompt": "x", "raw": True, "stream": False}
    ).json()
    assert_shape(body, RAW_FINAL)


def test_chat_stream_and_final_objects(api: TestClient) -> None:
    req = {"model": "fake:latest", "messages": [{"role": "user", "content": "hi"}]}
    objs = lines(api.post("/api/chat", json=req).text)
    for piece in objs:
        assert_shape(piece, CHAT_FINAL if piece["done"] else CHAT_PIECE)
        assert_shape(piece["message"], MESSAGE)
    assert objs[-1]["done"]
    assert objs[-1]["message"]["content"] == ""
    assert objs[-1]["model"] == "fake:latest"  # the name as the client sent it
    body = api.post("/api/chat", json={**req, "stream": False}).json()
    assert_shape(body, CHAT_FINAL)
    assert body["message"]["content"] == "".join(o["message"]["content"] for o in objs)


def test_load_and_unload_objects(api: TestClient) -> None:
    unload = api.post("/api/chat", json={"model": "fake", "messages": [], "keep_alive": 0})
    assert_shape(unload.json(), CONTROL_CHAT)
    assert unload.json()["done_reason"] == "unload"
    assert [m["name"] for m in api.get("/api/ps").json()["models"]] == ["emb:latest"]
    load = api.post("/api/generate", json={"model": "fake"}).json()
    assert_shape(load, CONTROL_GENERATE)
    assert load["done_reason"] == "load"
    assert "fake:latest" in [m["name"] for m in api.get("/api/ps").json()["models"]]


def test_tags_ps_show_version(api: TestClient) -> None:
    tags = api.get("/api/tags").json()
    assert set(tags) == {"models"}
    for entry in tags["models"]:
        assert_shape(entry, TAG)
        assert_shape(entry["details"], DETAILS)
    assert [m["name"] for m in tags["models"]] == ["fake:latest", "emb:latest", "lazy:latest"]
    ps = api.get("/api/ps").json()
    for entry in ps["models"]:
        assert_shape(entry, PS)
        assert_shape(entry["details"], DETAILS)
    show = api.post("/api/show", json={"model": "f"}).json()
    assert_shape(show, SHOW)
    assert show["capabilities"] == ["completion", "tools"]
    assert api.post("/api/show", json={"model": "emb"}).json()["capabilities"] == ["embedding"]
    assert api.get("/api/version").json().keys() == {"version"}
    assert api.head("/api/version").status_code == 200


def test_embed_and_embeddings_objects(api: TestClient) -> None:
    body = api.post("/api/embed", json={"model": "emb", "input": ["a", "b"]}).json()
    assert_shape(body, EMBED)
    assert len(body["embeddings"]) == 2
    assert len(body["embeddings"][0]) == 8
    single = api.post("/api/embed", json={"model": "emb", "input": "a"}).json()
    assert single["embeddings"][0] == body["embeddings"][0]
    legacy = api.post("/api/embeddings", json={"model": "emb", "prompt": "a"}).json()
    assert set(legacy) == {"embedding"}
    assert legacy["embedding"] == body["embeddings"][0]


def test_pull_of_a_configured_model_is_a_success_stream(api: TestClient) -> None:
    objs = lines(api.post("/api/pull", json={"model": "fake"}).text)
    assert all(set(o) <= {"status", "digest"} for o in objs)
    assert objs[-1] == {"status": "success"}
    single = api.post("/api/pull", json={"model": "fake", "stream": False})
    assert single.json() == {"status": "success"}
    missing = api.post("/api/pull", json={"model": "llama3.2"})
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}


@pytest.mark.parametrize(
    ("method", "path"),
    # create, copy, delete and blobs work now: tests/unit/test_created_models.py
    [("post", "/api/push")],
)  # fmt: skip
def test_store_operations_are_refused_in_ollama_shape(
    api: TestClient, method: str, path: str
) -> None:
    r = api.request(method, path, json={"model": "fake"})
    assert r.status_code == 400
    assert set(r.json()) == {"error"}
    assert "not supported" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
        ({"prompt": "x"}, 400, "model"),
        ({"model": "fake", "prompt": "x", "options": {"num_predict": "ten"}}, 400, "integer"),
        ({"model": "fake", "prompt": "x", "format": "yaml"}, 400, "invalid format"),
        ({"model": "fake", "prompt": "x", "think": True}, 400, "does not support thinking"),
        ({"model": "fake", "prompt": "x", "suffix": "y"}, 400, "does not support insert"),
        ({"model": "fake", "prompt": "x", "raw": True, "system": "s"}, 400, "raw mode"),
        ({"model": "fake", "prompt": "x", "keep_alive": "soon"}, 400, "invalid duration"),
        ({"model": "fake", "prompt": "x", "options": {"num_ctx": 4}}, 400, "context length"),
    ],
)
def test_generate_errors_are_ollama_shaped(
    api: TestClient, body: dict[str, Any], status: int, text: str
) -> None:
    r = api.post("/api/generate", json=body)
    assert r.status_code == status
    assert set(r.json()) == {"error"}
    assert text in r.json()["error"]


def test_an_error_after_streaming_began_is_one_error_line_with_status_200(
    api: TestClient,
) -> None:
    backend = fake_backend(api)

    async def failing(request: GenerationRequest) -> AsyncIterator[Delta]:
        yield Delta("one")
        raise EngineError("the engine fell over")

    backend.generate = failing  # type: ignore[method-assign]
    r = api.post(
        "/api/chat", json={"model": "fake", "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 200
    objs = lines(r.text)
    assert objs[0]["message"]["content"] == "one"
    assert objs[1:] == [{"error": "the engine fell over"}]


def test_num_predict_and_integers_sent_as_floats(api: TestClient) -> None:
    body = api.post(
        "/api/generate",
        json={
            "model": "fake",
            "prompt": "x",
            "stream": False,
            "options": {"num_predict": 3.0, "num_ctx": 8192.0, "seed": 1.0, "num_gpu": 1},
        },
    ).json()
    assert body["eval_count"] == 3
    assert body["done_reason"] == "length"


def test_num_predict_past_the_context_stops_at_its_end(api: TestClient) -> None:
    body = api.post(
        "/api/generate",
        json={"model": "fake", "prompt": "x", "stream": False,
              "options": {"num_predict": 100000, "num_ctx": 40, "ignore_eos": True}},
    ).json()  # fmt: skip
    assert body["done_reason"] == "length"
    assert body["prompt_eval_count"] + body["eval_count"] == 40


def test_options_read_the_way_ollama_reads_them(caplog: pytest.LogCaptureFixture) -> None:
    s = options.sampling({"num_predict": -1, "num_ctx": 1024.0, "seed": -1, "mystery": 3})
    assert s.max_tokens is None
    assert s.context_limit == 1024
    assert s.seed is None
    assert "mystery" in caplog.text
    assert options.sampling({"num_predict": -2}).max_tokens is None
    assert options.sampling({"num_predict": 7.0, "stop": ["\n"]}).max_tokens == 7
    with pytest.raises(InvalidRequestError):
        options.sampling({"temperature": True})
    with pytest.raises(InvalidRequestError):
        options.sampling({"stop": [1]})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, False), (0, 0.0), ("0", 0.0), (300, 300.0), ("5m", 300.0), ("1h30m", 5400.0),
     ("1.5s", 1.5), ("300ms", 0.3), (-1, None), ("-1", None), ("-1m", None)],
)  # fmt: skip
def test_keep_alive_durations(value: Any, seconds: float | bool | None) -> None:
    assert options.keep_alive(value) == seconds


def test_keep_alive_unloads_a_load_on_demand_model_once_idle(api: TestClient) -> None:
    req = {"model": "lazy", "prompt": "x", "stream": False, "keep_alive": "0.2s"}
    assert api.post("/api/generate", json=req).status_code == 200
    listed = {m["name"]: m for m in api.get("/api/ps").json()["models"]}
    assert listed["lazy:latest"]["expires_at"] < listed["fake:latest"]["expires_at"]
    lazy = handle(api, "lazy")
    deadline = time.monotonic() + 5
    while lazy.state == "ready" and time.monotonic() < deadline:
        api.get("/health")  # let the app's loop run
    assert lazy.state == "unloaded"
    # the next request loads it again
    again = api.post("/api/generate", json={"model": "lazy", "prompt": "x", "stream": False})
    assert again.status_code == 200
    assert again.json()["load_duration"] > 0


def test_keep_alive_is_ignored_for_a_model_that_does_not_load_on_demand(api: TestClient) -> None:
    req = {"model": "fake", "prompt": "x", "stream": False, "keep_alive": 0}
    assert api.post("/api/generate", json=req).status_code == 200
    assert "fake:latest" in [m["name"] for m in api.get("/api/ps").json()["models"]]


def test_root_speaks_to_ollama_clients_only(api: TestClient) -> None:
    assert api.get("/", headers={"User-Agent": "ollama-python/0.6"}).text == "Ollama is running"
    assert api.get("/", headers={"User-Agent": "ollama/0.9 (amd64 linux)"}).text.startswith(
        "Ollama"
    )
    assert api.get("/").json()["name"] == "llmserver"
    assert api.head("/").status_code == 200


def test_openai_routes_keep_openai_errors(api: TestClient) -> None:
    r = api.post("/v1/chat/completions", json={"model": "nope", "messages": []})
    assert isinstance(r.json()["error"], dict)
    assert api.post("/api/chat", json={"model": "nope", "messages": []}).json() == {
        "error": "model 'nope' not found"
    }


def test_a_body_without_a_json_content_type_is_read_as_json(api: TestClient) -> None:
    # Ollama's documentation uses curl -d, which sends application/x-www-form-urlencoded
    r = api.post(
        "/api/generate",
        content=b'{"model": "fake", "prompt": "hi", "stream": false}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    assert r.json()["done"] is True
    bad = api.post("/api/chat", content=b"{not json")
    assert bad.status_code == 400
    assert set(bad.json()) == {"error"}


def test_keys_and_rate_limits_answer_in_ollama_shape(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = create_key(path, "app", requests_per_minute=1)
    with open_client(fake_settings(keys_file=path)) as c:
        chat = {"model": "fake", "messages": [{"role": "user", "content": "x"}], "stream": False}
        missing = c.post("/api/chat", json=chat)
        assert missing.status_code == 401
        assert set(missing.json()) == {"error"}
        assert missing.json()["error"].startswith("Missing API key")
        auth = {"Authorization": f"Bearer {key}"}
        assert c.post("/api/chat", json=chat, headers=auth).status_code == 200
        limited = c.post("/api/chat", json=chat, headers=auth)
        assert limited.status_code == 429
        assert set(limited.json()) == {"error"}
        assert limited.headers["Retry-After"]
