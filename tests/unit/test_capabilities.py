"""One function decides what a model can do: llama.cpp chat and embedding models, the fake
backend, sentence-transformers, upstreams; ``/v1/models`` and ``/api/show`` both show it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.backends.llamacpp import LlamaCppBackend
from llmserver.backends.ollama import OllamaBackend
from llmserver.backends.sentence_transformers import SentenceTransformersBackend
from llmserver.backends.upstream import UpstreamBackend
from llmserver.config.model_configs import (
    LlamaCppConfig,
    ModelConfig,
    OllamaConfig,
    SentenceTransformersConfig,
    UpstreamConfig,
)
from llmserver.config.settings import default_model_path
from llmserver.core.capabilities import capabilities, context_length
from llmserver.core.manager import ModelHandle
from llmserver.core.scheduling import Limiter
from support import fake_model, fake_settings, open_client

CHAT = ("completion", "chat", "tools")
THINKING_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
    "{% if enable_thinking %}<think>{% endif %}"
)


def _handle(config: ModelConfig, backend: Any) -> ModelHandle:
    return ModelHandle(config, backend, Limiter(1, 1, None))


def test_a_llamacpp_chat_model_not_loaded_yet_completes_chats_and_takes_tools() -> None:
    config = LlamaCppConfig(id="c", path=default_model_path(), context_size=4096)
    handle = _handle(config, LlamaCppBackend(config))
    assert capabilities(handle).names() == CHAT
    assert context_length(handle) == 4096


def test_a_llamacpp_embedding_model_only_embeds() -> None:
    config = LlamaCppConfig(id="e", path=default_model_path(), embedding=True)
    handle = _handle(config, LlamaCppBackend(config))
    assert capabilities(handle).names() == ("embedding",)
    assert context_length(handle) is None  # not loaded, no context configured


def test_a_sentence_transformers_model_only_embeds(tmp_path: Path) -> None:
    config = SentenceTransformersConfig(id="st", path=str(tmp_path))
    assert capabilities(_handle(config, SentenceTransformersBackend(config))).names() == (
        "embedding",
    )


def test_an_openai_compatible_upstream_chats_and_only_its_engine_knows_the_context() -> None:
    config = UpstreamConfig(id="u", url="http://127.0.0.1:9/v1")
    handle = _handle(config, UpstreamBackend(config))
    assert capabilities(handle).names() == CHAT
    assert context_length(handle) is None


@pytest.mark.parametrize("embedding", [False, True])
def test_an_ollama_upstream_says_what_its_config_says(embedding: bool) -> None:
    config = OllamaConfig(id="o", url="http://127.0.0.1:9", embedding=embedding)
    handle = _handle(config, OllamaBackend(config))
    assert capabilities(handle).names() == (("embedding",) if embedding else CHAT)
    embedder = handle.embedder()
    spec = embedder.embedding_spec() if embedder is not None else None
    # a chat's context only the engine knows; an embedding model's input limit is declared
    assert context_length(handle) == (spec.max_input_tokens if spec is not None else None)
    assert (spec is not None) is embedding


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A fake chat model, a fake embedding model, a fake model with a thinking template."""
    settings = fake_settings(
        fake_model("chat", context_size=1024),
        fake_model("emb", embedding_dimensions=8, context_size=256),
        fake_model("thinker", chat_template=THINKING_TEMPLATE),
    )
    with open_client(settings) as c:
        yield c


def test_models_list_shows_capabilities_and_context_length(client: TestClient) -> None:
    cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert cards["chat"]["capabilities"] == list(CHAT)
    assert cards["chat"]["context_length"] == cards["chat"]["max_model_len"] == 1024
    assert cards["chat"]["state"] == "ready"
    assert cards["emb"]["capabilities"] == ["embedding"]
    assert cards["emb"]["context_length"] == 256
    assert cards["thinker"]["capabilities"] == [*CHAT, "thinking"]
    one = client.get("/v1/models/chat").json()
    assert one["capabilities"] == list(CHAT)


def test_ollama_show_takes_its_capabilities_from_the_same_facts(client: TestClient) -> None:
    def shown(model: str) -> list[str]:
        return list(client.post("/api/show", json={"model": model}).json()["capabilities"])

    assert shown("chat") == ["completion", "tools"]  # Ollama has no "chat" capability
    assert shown("emb") == ["embedding"]
    assert shown("thinker") == ["completion", "tools", "thinking"]
