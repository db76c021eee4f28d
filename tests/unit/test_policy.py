"""The one policy path: which model a caller may use, and whose text is masked, decided once.

Tested twice: against the core service (every kind of work x allowed / forbidden model x masked
/ unmasked caller), and through every HTTP route that takes a model, so a surface that forgot
to go through the service would fail here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.backends.fake import FakeBackend
from llmserver.config.settings import Settings
from llmserver.core.caller import Caller
from llmserver.core.manager import ModelManager
from llmserver.core.requests import ChatRequest, EmbedRequest, Message, Sampling, TextRequest
from llmserver.core.service import Service
from llmserver.errors import PermissionDeniedError
from llmserver.privacy import PIIMasker
from llmserver.security.keys import create_key
from support import fake_model, fake_settings, open_client
from support.fake import models

EMAIL = "jane.doe@example.com"
TEXT = f"write to {EMAIL} today"


def _settings(**extra: Any) -> Settings:
    return fake_settings(
        fake_model("chat"),
        fake_model("other"),
        fake_model("embed", embedding_dimensions=8),
        **extra,
    )


def _seen(manager: ModelManager, model: str) -> str:
    backend = manager.lookup(model).backend
    assert isinstance(backend, FakeBackend)
    return "\n".join(backend.seen)


@pytest.fixture
async def service() -> AsyncIterator[tuple[Service, ModelManager]]:
    settings = _settings()
    manager = ModelManager(settings)
    await manager.load_all()
    try:
        yield Service(manager, settings, PIIMasker()), manager
    finally:
        await manager.close_all()


async def _chat(svc: Service, caller: Caller, model: str) -> None:
    req = ChatRequest(model, (Message("user", TEXT),), Sampling(max_tokens=2))
    await svc.chat(caller, req).collect()


async def _text(svc: Service, caller: Caller, model: str) -> None:
    await svc.text(caller, TextRequest(model, (TEXT,), Sampling(max_tokens=2))).collect()


async def _embed(svc: Service, caller: Caller, model: str) -> None:
    await svc.embed(caller, EmbedRequest(model, [TEXT]))


WORK: dict[str, tuple[Callable[[Service, Caller, str], Any], str]] = {
    "chat": (_chat, "chat"),
    "text": (_text, "chat"),
    "embed": (_embed, "embed"),
}


@pytest.mark.parametrize("kind", sorted(WORK))
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
async def test_service_authorises_and_masks_every_kind_of_work(
    service: tuple[Service, ModelManager], kind: str, masked: bool
) -> None:
    svc, manager = service
    run, model = WORK[kind]
    allowed = Caller(name="k", models=frozenset({model}), mask_pii=masked, authenticated=True)
    forbidden = Caller(name="k", models=frozenset({"other"}), mask_pii=masked, authenticated=True)

    with pytest.raises(PermissionDeniedError) as refused:
        await run(svc, forbidden, model)
    assert refused.value.code == "model_not_allowed"
    assert EMAIL not in _seen(manager, model)
    assert "[EMAIL]" not in _seen(manager, model)

    await run(svc, allowed, model)
    seen = _seen(manager, model)
    if masked:
        assert EMAIL not in seen
        assert "write to [EMAIL] today" in seen
    else:
        assert TEXT in seen


async def test_service_masks_for_a_model_that_asks_for_it() -> None:
    settings = fake_settings(fake_model("private", mask_pii=True))
    manager = ModelManager(settings)
    await manager.load_all()
    try:
        svc = Service(manager, settings, PIIMasker())
        await _chat(svc, Caller.anyone(), "private")
        assert EMAIL not in _seen(manager, "private")
        assert "[EMAIL]" in _seen(manager, "private")
    finally:
        await manager.close_all()


# -- every route that takes a model --------------------------------------------------------------

#: route, body for a model, which model the body names (None: the default model)
ROUTES: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
    (
        "/v1/chat/completions",
        lambda m: {"model": m, "messages": [{"role": "user", "content": TEXT}], "max_tokens": 2},
    ),
    (
        "/v1/chat/completions#stream",
        lambda m: {
            "model": m,
            "messages": [{"role": "user", "content": TEXT}],
            "max_tokens": 2,
            "stream": True,
        },
    ),
    ("/v1/completions", lambda m: {"model": m, "prompt": TEXT, "max_tokens": 2}),
    ("/v1/embeddings", lambda m: {"model": m, "input": TEXT}),
    ("/generate", lambda m: {"model": m, "prompt": TEXT, "max_tokens": 2}),
    ("/chat", lambda m: {"model": m, "prompt": TEXT, "max_tokens": 2}),
    ("/infer", lambda m: {"query": TEXT, "max_length": 2}),
    ("/infer/stream", lambda m: {"query": TEXT, "max_length": 2}),
    (
        "/api/chat",
        lambda m: {
            "model": m,
            "messages": [{"role": "user", "content": TEXT}],
            "options": {"num_predict": 2},
        },
    ),
    (
        "/api/chat#no-stream",
        lambda m: {
            "model": f"{m}:latest",
            "messages": [{"role": "user", "content": TEXT}],
            "options": {"num_predict": 2},
            "stream": False,
        },
    ),
    ("/api/generate", lambda m: {"model": m, "prompt": TEXT, "options": {"num_predict": 2}}),
    (
        "/api/generate#raw",
        lambda m: {"model": m, "prompt": TEXT, "raw": True, "options": {"num_predict": 2}},
    ),
    ("/api/embed", lambda m: {"model": m, "input": [TEXT]}),
    ("/api/embeddings", lambda m: {"model": m, "prompt": TEXT}),
]


def _target(route: str) -> str:
    return "embed" if route in ("/v1/embeddings", "/api/embed", "/api/embeddings") else "chat"


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Keys: one for ``other`` only, one masked key that may use everything."""
    path = tmp_path / "keys.json"
    keys = {
        "other-only": create_key(path, "other-only", models=["other"]),
        "masked": create_key(path, "masked", mask_pii=True),
    }
    with open_client(
        _settings(keys_file=path, infer_mask_pii=False, default_model="chat")
    ) as client:
        yield client, keys


@pytest.mark.parametrize(("route", "body"), ROUTES, ids=[r for r, _ in ROUTES])
def test_every_route_refuses_a_forbidden_model_with_403(
    keyed: tuple[TestClient, dict[str, str]], route: str, body: Callable[[str], dict[str, Any]]
) -> None:
    client, keys = keyed
    model = _target(route)
    resp = client.post(
        route.split("#")[0],
        json=body(model),
        headers={"Authorization": f"Bearer {keys['other-only']}"},
    )
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    if route.startswith("/api/"):  # Ollama's shape: the message only
        assert error == f"This API key may not use the model '{model}'."
    else:
        assert error["code"] == "model_not_allowed"
    assert TEXT not in _seen(models(client), model)


@pytest.mark.parametrize(("route", "body"), ROUTES, ids=[r for r, _ in ROUTES])
def test_every_route_masks_a_masked_keys_text(
    keyed: tuple[TestClient, dict[str, str]], route: str, body: Callable[[str], dict[str, Any]]
) -> None:
    client, keys = keyed
    model = _target(route)
    resp = client.post(
        route.split("#")[0], json=body(model), headers={"Authorization": f"Bearer {keys['masked']}"}
    )
    assert resp.status_code == 200, resp.text
    seen = _seen(models(client), model)
    assert EMAIL not in seen
    assert "[EMAIL]" in seen


def test_ready_and_status_report_a_loaded_model_whose_engine_is_dead(client: TestClient) -> None:
    assert client.get("/ready").status_code == 200
    backend = models(client).lookup("fake").backend
    assert isinstance(backend, FakeBackend)
    backend.started = False  # the engine died under a loaded model: health() says so
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["models"] == {"fake": "unhealthy"}
    assert client.get("/").json()["models"][0]["state"] == "unhealthy"
    backend.started = True
    assert client.get("/ready").status_code == 200
