"""Roles, the default model, load/unload at run time, eviction and failed models (fake backend)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.config.settings import SettingsError
from support import done_loading, fake_model, fake_settings, model_states, open_client

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def managed() -> Iterator[TestClient]:
    """Three fake models, a cap of two loaded, a role and one on-demand model."""
    settings = fake_settings(
        fake_model("a", aliases=["alpha"]),
        fake_model("b", preload=False),
        fake_model("c", preload=False, load_on_demand=True),
        roles={"coding": "alpha", "router": "b"},
        max_loaded_models=2,
    )
    with open_client(settings, until=done_loading) as c:
        yield c


def chat(client: TestClient, model: str | None, **extra: Any) -> Any:
    body: dict[str, Any] = {"messages": USER, **extra}
    if model is not None:
        body["model"] = model
    return client.post(CHAT, json=body)


def test_models_list_backend_state_aliases_roles(managed: TestClient) -> None:
    cards = {m["id"]: m for m in managed.get("/v1/models").json()["data"]}
    assert set(cards) == {"a", "b", "c"}
    assert cards["a"]["backend"] == "fake"
    assert cards["a"]["aliases"] == ["alpha"]
    assert cards["a"]["roles"] == ["coding"]
    assert cards["b"]["roles"] == ["router"]
    assert model_states(managed) == {"a": "ready", "b": "unloaded", "c": "unloaded"}


def test_role_and_no_model_resolve(managed: TestClient) -> None:
    by_role = chat(managed, "coding", seed=1)
    by_default = chat(managed, None, seed=1)
    assert by_role.status_code == by_default.status_code == 200
    assert by_role.json()["model"] == by_default.json()["model"] == "a"
    assert by_role.json()["choices"] == by_default.json()["choices"]


def test_unloaded_model_is_503_until_loaded(managed: TestClient) -> None:
    resp = chat(managed, "router")
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "model_not_ready"
    assert "unloaded" in resp.json()["error"]["message"]
    assert model_states(managed)["b"] == "unloaded"  # never loaded silently
    loaded = managed.post("/v1/models/b/load")
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["state"] == "ready"
    assert chat(managed, "b").status_code == 200


def test_unload_then_requests_get_503(managed: TestClient) -> None:
    resp = managed.post("/v1/models/alpha/unload")
    assert resp.status_code == 200
    assert resp.json()["state"] == "unloaded"
    assert model_states(managed)["a"] == "unloaded"
    assert chat(managed, "a").status_code == 503
    assert managed.post("/v1/models/a/load").json()["state"] == "ready"
    assert chat(managed, "a").status_code == 200


def test_load_on_demand_and_lru_eviction(managed: TestClient) -> None:
    assert managed.post("/v1/models/b/load").status_code == 200
    assert chat(managed, "a").status_code == 200  # now b is the least recently used
    resp = chat(managed, "c")  # loads on demand, evicting b
    assert resp.status_code == 200, resp.text
    assert model_states(managed) == {"a": "ready", "b": "unloaded", "c": "ready"}
    assert managed.post("/v1/models/b/load").status_code == 200  # evicts a (older than c)
    assert model_states(managed) == {"a": "unloaded", "b": "ready", "c": "ready"}


def test_busy_model_is_not_evicted() -> None:
    settings = fake_settings(
        fake_model("slow", token_delay_s=0.05),
        fake_model("idle"),
        fake_model("new", preload=False),
        max_loaded_models=2,
    )
    with open_client(settings, until=done_loading) as client:
        chat(client, "slow")  # slow is used after idle: it would be the one kept by LRU alone
        chat(client, "idle")
        worker = threading.Thread(target=chat, args=(client, "slow"), kwargs={"max_tokens": 40})
        worker.start()
        deadline = time.monotonic() + 5
        while client.get("/").json()["models"][0]["slots_in_use"] == 0:
            assert time.monotonic() < deadline, "slow model never started generating"
            time.sleep(0.01)
        assert client.post("/v1/models/new/load").status_code == 200
        assert model_states(client) == {"slow": "ready", "idle": "unloaded", "new": "ready"}
        worker.join(10)


def test_failed_model_gives_reason_others_serve() -> None:
    settings = fake_settings(fake_model("ok"), fake_model("broken", fail_load="weights corrupt"))
    with open_client(settings, until=done_loading) as client:
        assert model_states(client) == {"ok": "ready", "broken": "failed"}
        assert client.get("/ready").status_code == 503
        resp = chat(client, "broken")
        assert resp.status_code == 503
        assert "weights corrupt" in resp.json()["error"]["message"]
        card = client.get("/v1/models/broken").json()
        assert card["error"] == "weights corrupt"
        assert chat(client, "ok").status_code == 200
        retry = client.post("/v1/models/broken/load")
        assert retry.status_code == 503
        assert "weights corrupt" in retry.json()["error"]["message"]


def test_unknown_model_load_is_404(managed: TestClient) -> None:
    resp = managed.post("/v1/models/nope/load")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"


def test_roles_must_point_at_models() -> None:
    with pytest.raises(SettingsError, match=r"roles\.coding"):
        fake_settings(fake_model("a"), roles={"coding": "missing"})
    with pytest.raises(SettingsError, match="already a model name"):
        fake_settings(fake_model("a"), roles={"a": "a"})
