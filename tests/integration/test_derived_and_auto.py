"""Derived models and ``model: "auto"`` on a real server with the default GGUF model: LoRA
variants that share the base's weights (an adapter written here with the ``gguf`` package),
Ollama's ``/api/create`` through the official ``ollama`` package, kept across a restart, and
routing by rules and by the default model acting as router under a choice schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from llmserver.config.settings import default_model_path
from support import RunningServer, run_server
from support.lora import write_lora

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
ROUTES = {
    "geography": {"model": "base", "description": "questions about countries and cities"},
    "cooking": {"model": "zero", "description": "recipes and food"},
}


def rss(pid: int) -> int:
    """Resident bytes of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, dict[str, Any]]]:
    source = default_model_path()
    assert source is not None, "the default model is not installed"
    tmp = tmp_path_factory.mktemp("derived")
    lora = str(write_lora(tmp / "adapter.gguf"))
    base = {"path": str(source), "context_size": 1024, "max_concurrent": 1}
    config = {
        "models": [
            {"id": "base", **base},
            {"id": "zero", "from": "base", "preload": False, "load_on_demand": True,
             "adapters": [{"path": lora, "scale": 0.0}]},
            {"id": "tuned", "from": "base", "preload": False, "load_on_demand": True,
             "adapters": [{"path": lora, "scale": 1.0}]},
        ],
        "routing": {
            "rules": [{"name": "code", "model": "tuned", "regex": r"\bdef\b"}],
            "router": {"model": "base", "routes": ROUTES},
            "default": "base",
        },
    }  # fmt: skip
    # the data directory (where created models are kept) is shared with the restarted server
    with run_server(tmp, config, env={"LLMSERVER_DATA_DIR": str(tmp / "data")}) as server:
        yield server, config | {"data": str(tmp / "data"), "lora": lora}


def answer(server: RunningServer, model: str) -> str:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
        seed=1,
    )
    assert reply.model == model
    return reply.choices[0].message.content or ""


def cards(server: RunningServer) -> dict[str, Any]:
    data = httpx.get(f"{server.base_url}/models", timeout=30).json()["data"]
    return {m["id"]: m for m in data}


def test_lora_scale_zero_answers_like_the_base_from_one_copy_of_the_weights(
    setup: tuple[RunningServer, dict[str, Any]],
) -> None:
    server, _ = setup
    weights = Path(str(default_model_path())).stat().st_size
    plain = answer(server, "base")
    before = rss(server.process.pid)
    assert answer(server, "zero") == plain  # loads "zero" on demand, on the base's weights
    grown = rss(server.process.pid) - before
    assert grown < weights, (grown, weights)  # a context and an adapter, not a second model
    assert answer(server, "tuned") != plain
    models = cards(server)
    assert {models[m]["state"] for m in ("base", "zero", "tuned")} == {"ready"}
    # what llama.cpp allocated for a variant holds no weights
    base_bytes = models["base"]["memory"]["bytes"]["host"]
    assert models["zero"]["memory"]["measured"] is True
    assert models["zero"]["memory"]["bytes"]["host"] < base_bytes - weights * 0.8


def test_ollama_create_chat_restart_chat_delete(
    setup: tuple[RunningServer, dict[str, Any]], tmp_path: Path
) -> None:
    server, config = setup
    client = ollama.Client(host=server.url)
    done = client.create(
        model="capitals",
        from_="base",
        system="You answer with the name of a city only.",
        parameters={"temperature": 0, "num_predict": 8},
    )
    assert done.status == "success"
    first = client.chat(model="capitals", messages=QUESTION).message.content
    assert first
    assert "capitals:latest" in [m.model for m in client.list().models]
    shown = client.show("capitals").modelfile or ""
    assert "FROM base" in shown
    assert "SYSTEM" in shown

    config = dict(config)
    config.pop("lora")
    restart = {"LLMSERVER_DATA_DIR": config.pop("data")}  # the same data directory
    with run_server(tmp_path, config, env=restart) as again:
        other = ollama.Client(host=again.url)
        assert other.chat(model="capitals", messages=QUESTION).message.content == first
        assert other.delete("capitals").status == "success"
        assert "capitals:latest" not in [m.model for m in other.list().models]
        with pytest.raises(ollama.ResponseError) as caught:
            other.chat(model="capitals", messages=QUESTION)
        assert caught.value.status_code == 404


def test_auto_by_rule_and_by_the_router_model(setup: tuple[RunningServer, dict[str, Any]]) -> None:
    server, _ = setup
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "def f(x): return x"}], max_tokens=4
    )
    assert raw.headers["x-llmserver-route"] == "rule:code; model=tuned"
    assert raw.parse().model == "tuned"
    prompts = ["How do I bake bread?", "Where is Paris?", "Tell me a joke", "Pasta with tomato"]
    for text in prompts:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": text}], max_tokens=4
        )
        reason, _, model = raw.headers["x-llmserver-route"].partition("; model=")
        assert reason.startswith("router:"), reason  # always one of the names
        route = reason.removeprefix("router:")
        assert route in ROUTES
        assert model == ROUTES[route]["model"] == raw.parse().model
    log = server.log()
    assert "model auto: rule:code chose tuned" in log
    assert "model auto: router:" in log


def test_ollama_create_with_an_uploaded_adapter(
    setup: tuple[RunningServer, dict[str, Any]],
) -> None:
    server, config = setup
    client = ollama.Client(host=server.url)
    digest = client.create_blob(config["lora"])  # HEAD, then POST /api/blobs/<digest>
    done = client.create(model="adapted", from_="base", adapters={"adapter.gguf": digest})
    assert done.status == "success"
    assert answer(server, "adapted") == answer(server, "tuned")  # the same adapter, scale 1
    assert "ADAPTER " in (client.show("adapted").modelfile or "")
    assert client.delete("adapted").status == "success"


def test_auto_completion_by_the_router_charges_its_tokens(
    setup: tuple[RunningServer, dict[str, Any]],
) -> None:
    server, _ = setup
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    raw = client.completions.with_raw_response.create(
        model="auto", prompt="Where is Paris?", max_tokens=4
    )
    reason, _, model = raw.headers["x-llmserver-route"].partition("; model=")
    assert reason.startswith("router:"), reason
    assert model == ROUTES[reason.removeprefix("router:")]["model"] == raw.parse().model
    (line,) = [x for x in server.log().splitlines() if '"POST /v1/completions"' in x]
    assert int(line.rpartition("router_tokens=")[2]) > 0  # the router's tokens, the caller's
