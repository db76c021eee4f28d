"""``model: "auto"`` on the fake backend: rules by regex, header, surface, key and prompt
length, the key's model limits, the default, the route header and the model named in the
response."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.config.settings import SettingsError
from llmserver.core.routing import ROUTE_HEADER
from llmserver.security.keys import create_key
from support import fake_model, fake_settings, open_client

ROUTING = {
    "rules": [
        {"name": "code", "model": "coder", "regex": r"```|\bdef\b"},
        {"name": "korean", "model": "korean", "regex": "[가-힣]"},
        {"name": "summaries", "model": "summariser", "headers": {"x-task": "^summar"}},
        {"name": "claude-clients", "model": "coder", "surface": ["anthropic"]},
        {"name": "long", "model": "summariser", "min_prompt_tokens": 200},
    ],
    "default": "general",
}
MODELS = [fake_model(m) for m in ("general", "coder", "korean", "summariser")]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "keys.json"
    return {
        "path": str(path),
        "all": create_key(path, "all", admin=True),
        "limited": create_key(path, "limited", models=["general", "korean"]),
    }


@pytest.fixture
def client(keys: dict[str, str]) -> Iterator[TestClient]:
    settings = fake_settings(*MODELS, routing=ROUTING, keys_file=keys["path"])
    with open_client(settings) as c:
        yield c


def ask(client: TestClient, key: str, text: str, **headers: str) -> Any:
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 3}
    headers["Authorization"] = f"Bearer {key}"
    return client.post("/v1/chat/completions", json=body, headers=headers)


@pytest.mark.parametrize(
    ("text", "headers", "model", "reason"),
    [
        ("def add(a, b): return a + b", {}, "coder", "rule:code"),
        ("이 문장을 요약해 주세요", {}, "korean", "rule:korean"),
        ("the meeting notes", {"x-task": "summary"}, "summariser", "rule:summaries"),
        ("word " * 300, {}, "summariser", "rule:long"),
        ("hello there", {}, "general", "default"),
    ],
)
def test_rules_choose_and_say_why(
    client: TestClient, keys: dict[str, str], text: str, headers: dict[str, str], model: str,
    reason: str,
) -> None:  # fmt: skip
    resp = ask(client, keys["all"], text, **headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == model
    assert resp.headers[ROUTE_HEADER] == f"{reason}; model={model}"


def test_a_model_the_key_may_not_use_is_passed_over(
    client: TestClient, keys: dict[str, str]
) -> None:
    resp = ask(client, keys["limited"], "def f(): pass  ```")  # code -> coder: not allowed
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "general"
    assert resp.headers[ROUTE_HEADER] == "default; model=general"
    korean = ask(client, keys["limited"], "안녕하세요")
    assert korean.json()["model"] == "korean"


def test_surface_rule_and_the_anthropic_envelope(client: TestClient, keys: dict[str, str]) -> None:
    body = {"model": "auto", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": keys["all"], "anthropic-version": "2023-06-01"}
    resp = client.post("/v1/messages", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "coder"
    assert resp.headers[ROUTE_HEADER] == "rule:claude-clients; model=coder"


def test_no_route_and_no_default_is_a_400(tmp_path: Path) -> None:
    routing = {"rules": [{"name": "code", "model": "coder", "regex": "def"}]}
    settings = fake_settings(*MODELS, routing=routing, data_dir=str(tmp_path))
    with open_client(settings) as client:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        resp = client.post("/v1/chat/completions", json=body)
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["param"] == "model"
        assert error["code"] == "no_route"
        ollama = client.post("/api/chat", json={**body, "stream": False})
        assert ollama.status_code == 400
        assert set(ollama.json()) == {"error"}


def test_router_answer_outside_the_routes_falls_back_to_the_default(tmp_path: Path) -> None:
    # the fake model ignores the schema and answers with words: never a route name
    routing = {
        "router": {"model": "general", "routes": {"code": {"model": "coder"}}},
        "default": "korean",
    }
    settings = fake_settings(*MODELS, routing=routing, data_dir=str(tmp_path))
    with open_client(settings) as client:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        resp = client.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.headers[ROUTE_HEADER] == "default; model=korean"


def test_routing_must_name_configured_models() -> None:
    with pytest.raises(SettingsError, match="'ghost'"):
        fake_settings(*MODELS, routing={"default": "ghost"})
    with pytest.raises(SettingsError, match="regular expression"):
        fake_settings(*MODELS, routing={"rules": [{"name": "x", "model": "coder", "regex": "("}]})


def test_the_router_models_tokens_are_the_callers(
    keys: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    routing = {
        "router": {"model": "general", "routes": {"code": {"model": "coder"}}},
        "default": "korean",
    }
    settings = fake_settings(
        *MODELS, routing=routing, keys_file=keys["path"], data_dir=str(tmp_path)
    )
    with open_client(settings) as client, caplog.at_level("INFO", "llmserver.access"):
        resp = ask(client, keys["all"], "hello there")
        assert resp.status_code == 200, resp.text
        assert resp.json()["model"] == "korean"
        admin = {"Authorization": f"Bearer {keys['all']}"}
        rows = client.get("/admin/usage", headers=admin).json()["data"]
    by_model = {r["model"]: r for r in rows if r["key_name"] == "all"}
    assert by_model["korean"]["prompt_tokens"] == resp.json()["usage"]["prompt_tokens"]
    router = by_model["general"]  # the router's work is charged to the caller's key
    assert router["requests"] == 1
    assert router["prompt_tokens"] > 0
    spent = router["prompt_tokens"] + router["completion_tokens"]
    lines = [r.getMessage() for r in caplog.records if r.name == "llmserver.access"]
    (line,) = [x for x in lines if "/v1/chat/completions" in x]
    assert f"router_tokens={spent}" in line


@pytest.mark.parametrize(
    ("path", "body", "served"),
    [
        ("/v1/completions", {"prompt": "def add(a, b):", "max_tokens": 3}, "model"),
        ("/api/generate", {"prompt": "def add(a, b):", "stream": False}, "model"),
        ("/api/generate", {"prompt": "def add(a, b):", "system": "be brief"}, None),
        ("/v1/responses", {"input": "def add(a, b):", "max_output_tokens": 3}, "model"),
        ("/v1/responses", {"input": "def add(a, b):", "stream": True}, None),
        ("/v1/responses", {"input": "def add(a, b):", "background": True}, "model"),
    ],
)
def test_auto_on_the_other_generation_routes(
    client: TestClient,
    keys: dict[str, str],
    path: str,
    body: dict[str, Any],
    served: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = {"Authorization": f"Bearer {keys['all']}"}
    with caplog.at_level("INFO", "llmserver.routing"):
        resp = client.post(path, json={"model": "auto", **body}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers[ROUTE_HEADER] == "rule:code; model=coder"
    if served is not None:
        assert resp.json()[served] == "coder"
    assert "model auto: rule:code chose coder" in caplog.text


def test_auto_completion_keeps_the_keys_model_limits(
    client: TestClient, keys: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {keys['limited']}"}
    body = {"model": "auto", "prompt": "def add(a, b):", "max_tokens": 3}
    resp = client.post("/v1/completions", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers[ROUTE_HEADER] == "default; model=general"  # coder: not this key's


def test_the_router_tokens_count_against_the_token_rate_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    routing = {
        "router": {"model": "general", "routes": {"code": {"model": "coder"}}},
        "default": "korean",
    }
    settings = fake_settings(
        *MODELS, routing=routing, data_dir=str(tmp_path), rate_limit_tokens_per_minute=5000
    )
    with open_client(settings) as client, caplog.at_level("INFO", "llmserver.access"):
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        resp = client.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        after = client.get("/v1/models")
        metrics = client.get("/metrics").text
    lines = [r.getMessage() for r in caplog.records if r.name == "llmserver.access"]
    (line,) = [x for x in lines if "/v1/chat/completions" in x]
    router = int(line.rpartition("router_tokens=")[2])
    assert router > 0
    used = resp.json()["usage"]["total_tokens"] + router
    assert int(after.headers["x-ratelimit-remaining-tokens"]) == 5000 - used
    # /metrics counts them as the router model's (no other request used "general")
    counted = [
        float(x.rpartition(" ")[2])
        for x in metrics.splitlines()
        if x.startswith(("llmserver_prompt_tokens_total", "llmserver_completion_tokens_total"))
        and 'model="general"' in x
    ]
    assert sum(counted) == router
