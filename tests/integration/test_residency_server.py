"""Residency by memory on a real server: three copies of the default GGUF model and the default
embedding model (pinned) under a host budget that holds the embedder and two of the copies.

Loads on demand evict the least recently used copy, never the pinned embedder; a model larger
than the budget is a 503 that names it and leaves the others serving; what llama.cpp and torch
report after each load is within a stated tolerance of the estimate made before it.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from llmserver.config.settings import default_embedding_configs, default_model_path
from support import RunningServer, run_server

pytestmark = pytest.mark.integration

MIB = 2**20
#: the embedder (~91 MiB of tensors) and two copies (~213 MiB each as llama.cpp allocates them
#: with 1024 cells and one slot) fit; three copies do not
BUDGET = 600 * MIB
#: how far the estimate may be from what the engine reported (llama.cpp: weights, KV cache,
#: compute and output buffers; torch: parameter and buffer bytes)
TOLERANCE = {"llamacpp": 0.10, "sentence_transformers": 0.15}
COPIES = ("one", "two", "three")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    source = default_model_path()
    embedders = default_embedding_configs()
    assert source is not None, "the default chat model is not installed"
    assert embedders, "the default embedding model is not installed"
    tmp = tmp_path_factory.mktemp("residency")
    models: list[dict[str, Any]] = [
        {"id": "embed", "backend": "sentence_transformers", "pinned": True,
         "path": embedders[0].model_dump()["path"]},
    ]  # fmt: skip
    for index, name in enumerate(COPIES):
        copy = shutil.copyfile(source, tmp / f"{name}.gguf")
        models.append(
            {"id": name, "path": str(copy), "context_size": 1024, "max_concurrent": 1,
             "preload": index == 0, "load_on_demand": True}
        )  # fmt: skip
    # 8192 cells in each of 4 slots: a KV cache of 720 MiB alone
    models.append(
        {"id": "big", "path": str(source), "context_size": 8192, "max_concurrent": 4,
         "preload": False, "load_on_demand": True}
    )  # fmt: skip
    config = {"models": models, "memory_budget": {"host": BUDGET}}
    with run_server(tmp, config) as running:
        yield running


def cards(server: RunningServer) -> tuple[dict[str, Any], dict[str, Any]]:
    body = httpx.get(f"{server.base_url}/models", timeout=30).json()
    return {m["id"]: m for m in body["data"]}, body["memory"]


def states(server: RunningServer) -> dict[str, str]:
    return {k: v["state"] for k, v in cards(server)[0].items()}


def ask(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=4, seed=1
    )
    assert reply.model == model
    return reply.choices[0].message.content or ""


def test_loads_evict_lru_keep_the_pin_and_refuse_what_cannot_fit(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    for name in COPIES:  # whatever ran before: unload the copies
        httpx.post(f"{server.base_url}/models/{name}/unload", timeout=60)
    ask(client, "one")
    ask(client, "two")
    ask(client, "one")  # "two" is now the least recently used copy (the embedder is older)
    ask(client, "three")
    assert states(server) == {
        "embed": "ready", "one": "ready", "two": "unloaded", "three": "ready", "big": "unloaded",
    }  # fmt: skip
    models, memory = cards(server)
    held = sum(models[m]["memory"]["bytes"]["host"] for m in ("embed", "one", "three"))
    assert memory["host"] == {"budget": BUDGET, "used": held}

    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, "big")
    assert caught.value.status_code == 503
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "insufficient_memory"
    assert "'big'" in error["message"]
    assert "MiB of host memory" in error["message"]
    assert "embed (pinned)" in error["message"]
    # nothing was disturbed: the same models serve
    assert states(server)["one"] == states(server)["three"] == "ready"
    ask(client, "one")
    ask(client, "three")
    assert len(client.embeddings.create(model="embed", input="hello").data[0].embedding) == 384


def test_measured_footprints_are_within_tolerance_of_the_estimate(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    ask(client, "one")
    models, _ = cards(server)
    for name in ("embed", "one"):
        card = models[name]
        memory = card["memory"]
        assert memory["measured"] is True, card
        measured, estimate = memory["bytes"]["host"], memory["estimate"]["host"]
        assert abs(measured - estimate) <= TOLERANCE[card["backend"]] * measured, memory
    ps = {m["name"]: m for m in httpx.get(f"{server.url}/api/ps", timeout=30).json()["models"]}
    assert ps["one:latest"]["size"] == models["one"]["memory"]["bytes"]["host"]
    assert ps["one:latest"]["size_vram"] == 0


@pytest.fixture(scope="module")
def swapping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Three copies of the default model, room for two, the swap scheduler's turns on."""
    source = default_model_path()
    assert source is not None, "the default chat model is not installed"
    tmp = tmp_path_factory.mktemp("swapping")
    models = [
        {"id": name, "path": str(shutil.copyfile(source, tmp / f"{name}.gguf")),
         "context_size": 1024, "max_concurrent": 1, "preload": False, "load_on_demand": True}
        for name in COPIES
    ]  # fmt: skip
    config = {
        "models": models,
        "memory_budget": {"host": 450 * MIB},
        "swap_min_resident_s": 4,
        "swap_max_wait_s": 10,
        "max_load_wait_s": 120,
    }
    with run_server(tmp, config) as running:
        yield running


def swaps(server: RunningServer) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    (line,) = [x for x in text.splitlines() if x.startswith("llmserver_model_swaps_total ")]
    return float(line.split()[1])


def test_an_interleaved_stream_takes_turns_instead_of_swapping_each_time(
    swapping: RunningServer,
) -> None:
    client = openai.OpenAI(base_url=swapping.base_url, api_key="unused", max_retries=0)
    answered: list[str] = []

    def asker(model: str) -> None:
        for _ in range(4):
            answered.append(ask(client, model))

    threads = [threading.Thread(target=asker, args=(m,)) for m in COPIES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(answered) == 12  # every request served: none waited past max_load_wait_s
    # three clients interleaving 12 requests over three models, room for two: in turns, a few
    # swaps (without turns each change of model swaps)
    assert swaps(swapping) <= 4
    assert list(states(swapping).values()).count("ready") == 2


def test_a_stream_starts_when_its_model_is_ready_and_a_client_that_leaves_loads_nothing(
    swapping: RunningServer,
) -> None:
    for name in COPIES:
        httpx.post(f"{swapping.base_url}/models/{name}/unload", timeout=60)
    for name in COPIES[:2]:  # loaded just now: they hold their places for 4 s
        httpx.post(f"{swapping.base_url}/models/{name}/load", timeout=60).raise_for_status()
    waiting = COPIES[2]
    body = {"model": waiting, "messages": [{"role": "user", "content": "Say hi"}]}
    with pytest.raises(httpx.ReadTimeout):  # the client leaves while its model waits
        httpx.post(f"{swapping.base_url}/chat/completions", json=body, timeout=0.5)
    before = swaps(swapping)
    time.sleep(5)  # the turns end: with nobody waiting for it, nothing loads
    assert states(swapping)[waiting] == "unloaded"
    assert swaps(swapping) == before
    client = openai.OpenAI(base_url=swapping.base_url, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model=waiting, messages=[{"role": "user", "content": "Say hi"}], max_tokens=4, stream=True
    )
    first = next(iter(stream))
    assert states(swapping)[waiting] == "ready"  # the first byte came after the load
    assert first.model == waiting
    stream.close()
