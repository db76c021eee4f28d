"""Derived models on the fake backend: ``from:`` in the config, Ollama's ``/api/create``
(Modelfile and JSON form), ``/api/copy``, ``/api/delete``, ``/api/show``'s Modelfile, and the
created models surviving a restart."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.config.settings import Settings, SettingsError
from llmserver.security.keys import create_key
from support import done_loading, fake_model, fake_settings, model_states, open_client

MODELFILE = '''FROM fake
SYSTEM """You summarise Korean text
in one sentence."""
PARAMETER temperature 0.2
PARAMETER stop "###"
PARAMETER stop "END"
MESSAGE user hello
MESSAGE assistant "hi there"
'''


def settings(tmp_path: Path, *extra: dict[str, Any]) -> Settings:
    return fake_settings(fake_model("fake"), *extra, data_dir=str(tmp_path))


def prompt_tokens(client: TestClient, model: str, **body: Any) -> int:
    messages = [{"role": "user", "content": "one two three"}]
    resp = client.post(
        "/api/chat", json={"model": model, "messages": messages, "stream": False, **body}
    )
    assert resp.status_code == 200, resp.text
    return int(resp.json()["prompt_eval_count"])


def test_modelfile_create_chat_show_restart_delete(tmp_path: Path) -> None:
    with open_client(settings(tmp_path), until=done_loading) as client:
        resp = client.post("/api/create", json={"model": "summary", "modelfile": MODELFILE})
        assert resp.status_code == 200, resp.text
        assert resp.text.strip().splitlines()[-1] == '{"status":"success"}'
        # the system prompt and the two preset turns are part of every prompt
        assert prompt_tokens(client, "summary") > prompt_tokens(client, "fake") + 10
        shown = client.post("/api/show", json={"model": "summary"}).json()["modelfile"]
        assert "FROM fake\n" in shown
        assert 'SYSTEM """You summarise Korean text\nin one sentence."""' in shown
        assert "PARAMETER temperature 0.2" in shown
        assert 'PARAMETER stop "###"\nPARAMETER stop "END"' in shown
        assert 'MESSAGE assistant """hi there"""' in shown
    with open_client(settings(tmp_path), until=done_loading) as client:  # a restart
        assert "summary" in model_states(client)
        assert prompt_tokens(client, "summary:latest") > prompt_tokens(client, "fake") + 10
        assert client.request("DELETE", "/api/delete", json={"model": "summary"}).status_code == 200
        assert "summary" not in model_states(client)
    with open_client(settings(tmp_path), until=done_loading) as client:
        assert "summary" not in model_states(client)


def test_json_create_copy_and_a_request_system_prompt_wins(tmp_path: Path) -> None:
    with open_client(settings(tmp_path), until=done_loading) as client:
        body = {"model": "terse", "from": "fake", "system": "Answer in one word.", "stream": False}
        resp = client.post("/api/create", json={**body, "parameters": {"num_predict": 3}})
        assert resp.json() == {"status": "success"}
        assert (
            client.post("/api/copy", json={"source": "terse", "destination": "t2"}).status_code
            == 200
        )
        cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert {"terse", "t2"} <= set(cards)
        own = [{"role": "system", "content": "x"}, {"role": "user", "content": "one two three"}]
        plain = client.post("/api/chat", json={"model": "fake", "messages": own, "stream": False})
        varied = client.post("/api/chat", json={"model": "t2", "messages": own, "stream": False})
        assert plain.json()["prompt_eval_count"] == varied.json()["prompt_eval_count"]
        assert varied.json()["eval_count"] <= 3  # num_predict came along with the copy


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"model": "x"}, "'from' (FROM) is required"),
        ({"model": "x", "from": "nope"}, "model 'nope' not found"),
        ({"model": "x", "from": "fake", "parameters": {"mirostat": 1}}, "'mirostat'"),
        ({"model": "x", "from": "fake", "template": "{{ .System }}"}, "Go templates"),
        ({"model": "x", "from": "fake", "quantize": "q4_K_M"}, "'quantize' is not supported"),
        ({"model": "x", "from": "fake", "adapters": {"a.gguf": "sha256:" + "0" * 64}}, "adapters"),
        ({"model": "x", "modelfile": "FROM fake\nLICENSE MIT"}, "LICENSE is not supported"),
        ({"model": "fake", "from": "fake"}, "configuration file"),
    ],
)
def test_bad_creates_are_400_in_ollama_shape(tmp_path: Path, body: Any, text: str) -> None:
    with open_client(settings(tmp_path), until=done_loading) as client:
        resp = client.post("/api/create", json=body)
        assert resp.status_code in (400, 404), resp.text
        assert set(resp.json()) == {"error"}
        assert text in resp.json()["error"]


def test_configured_models_cannot_be_deleted(tmp_path: Path) -> None:
    with open_client(settings(tmp_path), until=done_loading) as client:
        resp = client.request("DELETE", "/api/delete", json={"model": "fake"})
        assert resp.status_code == 400
        assert "configuration file" in resp.json()["error"]
        assert model_states(client)["fake"] == "ready"


def test_create_copy_delete_need_an_admin_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    admin = {"Authorization": f"Bearer {create_key(path, 'admin', admin=True)}"}
    user = {"Authorization": f"Bearer {create_key(path, 'user')}"}
    keyed = fake_settings(fake_model("fake"), data_dir=str(tmp_path), keys_file=str(path))
    with open_client(keyed) as client:
        body = {"model": "x", "from": "fake", "stream": False}
        refused = client.post("/api/create", json=body, headers=user)
        assert refused.status_code == 403, refused.text
        assert set(refused.json()) == {"error"}
        assert client.post("/api/create", json=body, headers=admin).status_code == 200
        copy = {"source": "x", "destination": "y"}
        assert client.post("/api/copy", json=copy, headers=user).status_code == 403
        gone = client.request("DELETE", "/api/delete", json={"model": "x"}, headers=user)
        assert gone.status_code == 403
        assert (
            client.request("DELETE", "/api/delete", json={"model": "x"}, headers=admin).status_code
            == 200
        )


def test_config_from_entry_inherits_and_overrides(tmp_path: Path) -> None:
    derived = {"id": "korean", "from": "fake", "system": "한국어로 답하세요.", "stop": ["\n\n"]}
    with open_client(settings(tmp_path, derived), until=done_loading) as client:
        assert model_states(client) == {"fake": "ready", "korean": "ready"}
        assert prompt_tokens(client, "korean") > prompt_tokens(client, "fake")
        card = client.get("/v1/models/korean").json()
        assert card["backend"] == "fake"


def test_from_a_model_that_cannot_share_is_refused() -> None:
    with pytest.raises(SettingsError, match="'ghost' is not a configured model"):
        fake_settings(fake_model("a"), {"id": "b", "from": "ghost"})
    with pytest.raises(SettingsError, match="comes back to itself"):
        fake_settings({"id": "a", "from": "b"}, {"id": "b", "from": "a"})


def test_blobs_upload_checks_the_digest_and_head_finds_it(tmp_path: Path) -> None:
    data = b"not really an adapter"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open_client(settings(tmp_path), until=done_loading) as client:
        assert client.head(f"/api/blobs/{digest}").status_code == 404
        wrong = client.post(f"/api/blobs/sha256:{'1' * 64}", content=data)
        assert wrong.status_code == 400
        assert "digest" in wrong.json()["error"]
        assert client.post("/api/blobs/sha256:00", content=data).status_code == 400
        assert client.post(f"/api/blobs/{digest}", content=data).status_code == 201
        assert client.head(f"/api/blobs/{digest}").status_code == 200
        # a fake model takes no adapters: the create names the field that cannot apply
        body = {"model": "x", "from": "fake", "adapters": {"a.gguf": digest}, "stream": False}
        resp = client.post("/api/create", json=body)
        assert resp.status_code == 400
        assert "adapters" in resp.json()["error"]
