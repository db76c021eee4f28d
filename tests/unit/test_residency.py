"""Residency by memory with fake models that declare their size: eviction least recently used
first, pinned and busy models kept, a load that cannot fit is a 503 that disturbs nothing, and
the footprints and budget use shown on /v1/models, /api/ps and /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llmserver.config.settings import default_model_path, load_settings
from llmserver.core.footprint import HOST, Footprint, estimate
from llmserver.core.residency import Budgets, NoRoomError, Resident, plan_room
from support import NO_KEYS_FILE, done_loading, fake_model, fake_settings, model_states, open_client

CHAT = "/v1/chat/completions"
MIB = 2**20


def chat(client: TestClient, model: str, **extra: Any) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return client.post(CHAT, json=body)


def sized(id: str, mib: int, **extra: Any) -> dict[str, Any]:
    return fake_model(id, memory_bytes=mib * MIB, **extra)


@pytest.fixture
def two_fit() -> Iterator[TestClient]:
    """A 250 MiB host budget; three 100 MiB models (two fit), one of 300 MiB, one pinned."""
    settings = fake_settings(
        sized("a", 100),
        sized("b", 100),
        sized("c", 100, preload=False, load_on_demand=True),
        sized("huge", 300, preload=False, load_on_demand=True),
        memory_budget={"host": 250 * MIB},
    )
    with open_client(settings, until=done_loading) as client:
        yield client


def test_on_demand_load_evicts_least_recently_used(two_fit: TestClient) -> None:
    assert chat(two_fit, "a").status_code == 200  # b is now the least recently used
    resp = chat(two_fit, "c")
    assert resp.status_code == 200, resp.text
    expected = {"a": "ready", "b": "unloaded", "c": "ready", "huge": "unloaded"}
    assert model_states(two_fit) == expected
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(two_fit.get("/metrics").text)
        for sample in family.samples
    }
    assert samples["llmserver_model_swaps_total"] == 1  # counted, with its seconds
    assert samples["llmserver_model_swap_seconds_total"] > 0


def test_model_larger_than_the_budget_is_503_and_disturbs_nothing(two_fit: TestClient) -> None:
    resp = chat(two_fit, "huge")
    assert resp.status_code == 503
    error = resp.json()["error"]
    assert error["code"] == "insufficient_memory"
    assert "'huge'" in error["message"]
    assert "300 MiB of host memory" in error["message"]
    assert "250 MiB" in error["message"]
    expected = {"a": "ready", "b": "ready", "c": "unloaded", "huge": "unloaded"}
    assert model_states(two_fit) == expected
    assert chat(two_fit, "a").status_code == 200
    assert chat(two_fit, "b").status_code == 200


def test_models_list_shows_footprints_and_budget_use(two_fit: TestClient) -> None:
    body = two_fit.get("/v1/models").json()
    cards = {m["id"]: m for m in body["data"]}
    memory = {"bytes": {HOST: 100 * MIB}, "measured": False, "estimate": {HOST: 100 * MIB}}
    assert cards["a"]["memory"] == memory
    assert body["memory"][HOST] == {"budget": 250 * MIB, "used": 200 * MIB}
    ps = {m["name"]: m for m in two_fit.get("/api/ps").json()["models"]}
    assert ps["a:latest"]["size"] == 100 * MIB
    assert ps["a:latest"]["size_vram"] == 0
    metrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(two_fit.get("/metrics").text)
        for sample in family.samples
    }
    host = (("device", HOST),)
    assert metrics["llmserver_memory_budget_bytes", host] == 250 * MIB
    assert metrics["llmserver_memory_used_bytes", host] == 200 * MIB
    assert metrics["llmserver_model_memory_bytes", (*host, ("model", "c"))] == 100 * MIB


def test_pinned_model_stays_and_the_other_goes() -> None:
    settings = fake_settings(
        sized("router", 100, pinned=True),
        sized("expert", 100),
        sized("other", 100, preload=False),
        memory_budget={"host": 250 * MIB},
    )
    with open_client(settings, until=done_loading) as client:
        assert chat(client, "expert").status_code == 200  # the router is least recently used
        assert client.post("/v1/models/other/load").status_code == 200
        assert model_states(client) == {"router": "ready", "expert": "unloaded", "other": "ready"}
        # only the pinned one and the new one are left: the next load has nothing to evict
        assert chat(client, "other").status_code == 200
        resp = client.post("/v1/models/expert/load")
        assert resp.status_code == 200  # evicts "other", never the router
        assert model_states(client) == {"router": "ready", "expert": "ready", "other": "unloaded"}


def test_busy_and_pinned_models_are_kept_and_the_load_is_503() -> None:
    settings = fake_settings(
        sized("router", 100, pinned=True),
        sized("slow", 100, token_delay_s=0.05),
        sized("new", 100, preload=False),
        memory_budget={"host": 250 * MIB},
        max_load_wait_s=0,
    )
    with open_client(settings, until=done_loading) as client:
        worker = threading.Thread(target=chat, args=(client, "slow"), kwargs={"max_tokens": 40})
        worker.start()
        deadline = time.monotonic() + 5
        while client.get("/v1/models/slow").json()["state"] != "ready" or not _in_use(client):
            assert time.monotonic() < deadline, "slow model never started generating"
            time.sleep(0.01)
        resp = client.post("/v1/models/new/load")
        assert resp.status_code == 503
        message = resp.json()["error"]["message"]
        assert "router (pinned)" in message
        assert "slow (busy)" in message
        assert model_states(client) == {"router": "ready", "slow": "ready", "new": "unloaded"}
        worker.join(10)


def test_a_load_waits_for_a_busy_model_to_finish_then_evicts_it() -> None:
    settings = fake_settings(
        sized("router", 100, pinned=True),
        sized("slow", 100, token_delay_s=0.02),
        sized("new", 100, preload=False),
        memory_budget={"host": 250 * MIB},
    )
    with open_client(settings, until=done_loading) as client:
        worker = threading.Thread(target=chat, args=(client, "slow"), kwargs={"max_tokens": 30})
        worker.start()
        deadline = time.monotonic() + 5
        while not _in_use(client):
            assert time.monotonic() < deadline, "slow model never started generating"
            time.sleep(0.01)
        resp = client.post("/v1/models/new/load")  # waits for "slow" to finish its request
        assert resp.status_code == 200, resp.text
        worker.join(10)
        assert model_states(client) == {"router": "ready", "slow": "unloaded", "new": "ready"}


def _in_use(client: TestClient) -> bool:
    models = client.get("/").json()["models"]
    return any(m["id"] == "slow" and m["slots_in_use"] > 0 for m in models)


def test_preload_that_does_not_fit_stays_unloaded_with_the_reason() -> None:
    settings = fake_settings(
        sized("a", 100), sized("b", 100), sized("c", 100), memory_budget={"host": 250 * MIB}
    )
    with open_client(settings, until=done_loading) as client:
        assert model_states(client) == {"a": "ready", "b": "ready", "c": "unloaded"}
        assert "host budget is 250 MiB" in client.get("/v1/models/c").json()["error"]
        assert client.get("/ready").status_code == 200


def test_max_loaded_models_still_counts() -> None:
    settings = fake_settings(
        sized("a", 1), sized("b", 1), sized("c", 1, preload=False), max_loaded_models=2
    )
    with open_client(settings, until=done_loading) as client:
        assert client.post("/v1/models/c/load").status_code == 200
        assert model_states(client) == {"a": "unloaded", "b": "ready", "c": "ready"}


def test_plan_frees_only_the_device_that_is_short() -> None:
    budgets = Budgets({HOST: 1000, "cuda:0": 1000})
    residents = [
        Resident("gpu-old", Footprint({"cuda:0": 800}), 1.0, None),
        Resident("host-older", Footprint({HOST: 900}), 0.5, None),
        Resident("gpu-pinned", Footprint({"cuda:0": 100}), 0.1, "pinned"),
    ]
    plan = plan_room("new", Footprint({"cuda:0": 500, HOST: 50}), residents, budgets, None)
    assert [r.id for r in plan] == ["gpu-old"]
    with pytest.raises(NoRoomError, match="gpu-pinned \\(pinned\\)"):
        plan_room("big", Footprint({"cuda:0": 950}), residents, budgets, None)


def test_estimate_of_the_default_gguf_counts_weights_kv_and_compute() -> None:
    path = default_model_path()
    assert path is not None
    settings = load_settings(
        {
            "keys_file": NO_KEYS_FILE,
            "models": [{"id": "m", "path": str(path), "context_size": 2048, "max_concurrent": 2}],
        }
    )
    footprint = estimate(settings.models[0])
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 (576 / 9): 23040 bytes a token, f16 cells
    kv = 30 * 2 * 3 * 64 * 2 * 2048 * 2
    weights = path.stat().st_size
    assert footprint.by_device.keys() == {HOST}
    assert weights + kv < footprint.on(HOST) < weights + kv + 160 * MIB


@pytest.mark.parametrize(("hold", "wait", "status"), [(60.0, 0.0, 503), (0.3, 30.0, 200)])
def test_a_recently_loaded_model_is_held_for_its_turn(
    hold: float, wait: float, status: int
) -> None:
    settings = fake_settings(
        sized("a", 100),
        sized("b", 100),
        sized("c", 100, preload=False),
        memory_budget={"host": 250 * MIB},
        swap_min_resident_s=hold,
        max_load_wait_s=wait,
    )
    with open_client(settings, until=done_loading) as client:
        resp = client.post("/v1/models/c/load")
        assert resp.status_code == status, resp.text
        if status == 503:  # held: nothing was evicted
            assert "(recently loaded)" in resp.json()["error"]["message"]
            assert model_states(client) == {"a": "ready", "b": "ready", "c": "unloaded"}
        else:  # the turn ended while the load waited: the least recently used one went
            assert model_states(client) == {"a": "unloaded", "b": "ready", "c": "ready"}
