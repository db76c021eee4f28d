"""Seed 001's paths (/api/v1/..., /models, /models/{name}/load and /unload) answer like the
routes they alias, under the same keys and policy, in OpenAI's error shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.security.keys import create_key
from support import fake_model, fake_settings, open_client

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "seed": 3}
COMPLETION = {"model": "m", "prompt": "once upon", "max_tokens": 5, "seed": 3}
EMBED = {"model": "emb", "input": ["a", "b c"]}
#: alias -> target, for the POST routes that take a body
BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("/api/v1/chat/completions", "/v1/chat/completions", CHAT),
    ("/api/v1/completions", "/v1/completions", COMPLETION),
    ("/api/v1/embeddings", "/v1/embeddings", EMBED),
]
ALIASES = {
    "/api/v1/chat/completions": "/v1/chat/completions",
    "/api/v1/completions": "/v1/completions",
    "/api/v1/embeddings": "/v1/embeddings",
    "/models": "/v1/models",
    "/models/{model_id}/load": "/v1/models/{model_id}/load",
    "/models/{model_id}/unload": "/v1/models/{model_id}/unload",
}


def _models() -> list[dict[str, Any]]:
    return [fake_model("m"), fake_model("other"), fake_model("emb", embedding_dimensions=8)]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with open_client(fake_settings(*_models())) as c:
        yield c


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    path = tmp_path / "keys.json"
    keys = {
        "admin": create_key(path, "admin", admin=True),
        "m-only": create_key(path, "m-only", models=["m", "emb"]),
        "other-only": create_key(path, "other-only", models=["other"]),
    }
    with open_client(fake_settings(*_models(), keys_file=path)) as c:
        yield c, keys


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two answers alike but for their id and creation time."""
    for body in (a, b):
        body.pop("id", None)
        body.pop("created", None)
    assert a == b


@pytest.mark.parametrize(("alias", "target", "body"), BODIES, ids=[a for a, _, _ in BODIES])
def test_post_alias_answers_like_its_target(
    client: TestClient, alias: str, target: str, body: dict[str, Any]
) -> None:
    ours, theirs = client.post(target, json=body), client.post(alias, json=body)
    assert ours.status_code == theirs.status_code == 200, theirs.text
    _same(ours.json(), theirs.json())
    if "messages" in body or "prompt" in body:
        streamed = client.post(alias, json={**body, "stream": True})
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert streamed.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(("alias", "target", "body"), BODIES, ids=[a for a, _, _ in BODIES])
def test_alias_errors_are_openai_shaped(
    client: TestClient, alias: str, target: str, body: dict[str, Any]
) -> None:
    for bad in ({**body, "model": "nope"}, {"model": "m"}):
        ours, theirs = client.post(target, json=bad), client.post(alias, json=bad)
        assert ours.status_code == theirs.status_code
        assert theirs.status_code in (400, 404)
        assert ours.json() == theirs.json()
        assert set(theirs.json()) == {"error"}


def test_models_alias_lists_what_v1_models_lists(client: TestClient) -> None:
    assert client.get("/models").json() == client.get("/v1/models").json()
    assert [m["id"] for m in client.get("/models").json()["data"]] == ["m", "other", "emb"]


def test_load_and_unload_aliases(client: TestClient) -> None:
    unloaded = client.post("/models/other/unload")
    assert unloaded.status_code == 200, unloaded.text
    assert unloaded.json()["state"] == "unloaded"
    assert client.post("/v1/models/other/unload").json() == unloaded.json()
    loaded = client.post("/models/other/load")
    assert loaded.status_code == 200
    assert loaded.json()["state"] == "ready"
    ours = client.post("/v1/models/other/load").json()
    assert {k: v for k, v in ours.items() if k != "created"} == {
        k: v for k, v in loaded.json().items() if k != "created"
    }
    missing = client.post("/models/nope/load")
    assert missing.status_code == 404
    assert missing.json() == client.post("/v1/models/nope/load").json()


@pytest.mark.parametrize(("alias", "target", "body"), BODIES, ids=[a for a, _, _ in BODIES])
def test_post_aliases_with_keys_401_and_403(
    keyed: tuple[TestClient, dict[str, str]], alias: str, target: str, body: dict[str, Any]
) -> None:
    client, keys = keyed
    for path in (target, alias):
        assert client.post(path, json=body).status_code == 401
        wrong = {"Authorization": "Bearer llms-wrong"}
        assert client.post(path, json=body, headers=wrong).status_code == 401
    refused = {"Authorization": f"Bearer {keys['other-only']}"}
    ours = client.post(target, json=body, headers=refused)
    theirs = client.post(alias, json=body, headers=refused)
    assert ours.status_code == theirs.status_code == 403
    assert ours.json() == theirs.json()
    assert theirs.json()["error"]["code"] == "model_not_allowed"
    allowed = {"Authorization": f"Bearer {keys['m-only']}"}
    assert client.post(alias, json=body, headers=allowed).status_code == 200


def test_model_aliases_with_keys(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = keyed
    assert client.get("/models").status_code == 401
    assert client.get("/models").json() == client.get("/v1/models").json()
    limited = {"Authorization": f"Bearer {keys['other-only']}"}
    listed = client.get("/models", headers=limited).json()
    assert [m["id"] for m in listed["data"]] == ["other"]
    assert listed == client.get("/v1/models", headers=limited).json()
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    for action in ("unload", "load"):
        alias, target = f"/models/other/{action}", f"/v1/models/other/{action}"
        for path in (alias, target):
            assert client.post(path).status_code == 401
        refused = client.post(alias, headers=limited)
        assert refused.status_code == 403
        assert refused.json() == client.post(target, headers=limited).json()
        assert client.post(alias, headers=admin).status_code == 200


def test_api_v1_keeps_openai_shape_beside_a_shorter_api_prefix(client: TestClient) -> None:
    """Ollama's surface claims /api; /api/v1 is named (by OpenAI's descriptor), so it still
    wins."""
    assert set(client.post("/api/v1/chat/completions", json={}).json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert client.get("/api/v1/nope").json()["error"]["code"] == "not_found"
    assert isinstance(client.get("/api/nope").json()["error"], str)


def test_aliases_are_marked_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for alias, target in ALIASES.items():
        ((method, operation),) = paths[alias].items()
        assert operation["tags"] == ["aliases"], alias
        assert operation["x-alias-of"] == target
        assert operation["summary"] == f"Alias of {method.upper()} {target}"
        assert target in paths
