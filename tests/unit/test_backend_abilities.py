"""Optional backend abilities are protocols checked with ``isinstance``: what each built-in
backend declares, and what the core makes of a backend that only embeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from llmserver.backends.abilities import Abilities, Generating
from llmserver.backends.base import EmbeddingInput, EmbeddingResult, EmbeddingSpec
from llmserver.backends.fake import FakeBackend
from llmserver.backends.ollama import OllamaBackend
from llmserver.backends.upstream import UpstreamBackend
from llmserver.config.model_configs import FakeConfig, ModelConfig, OllamaConfig, UpstreamConfig
from llmserver.core.manager import ModelHandle
from llmserver.core.scheduling import Limiter
from llmserver.errors import InvalidRequestError


class EmbedOnly:
    """A plugin that embeds and has no ``generate`` at all."""

    max_parallel: ClassVar[int] = 1

    def __init__(self, loaded: bool) -> None:
        self.loaded = loaded

    async def start(self) -> None:
        self.loaded = True

    async def health(self) -> bool:
        return self.loaded

    async def close(self) -> None:
        self.loaded = False

    def embedding_spec(self) -> EmbeddingSpec | None:
        return EmbeddingSpec(dimensions=3, max_input_tokens=8) if self.loaded else None

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> EmbeddingResult:
        return EmbeddingResult([[0.0, 0.0, 1.0] for _ in inputs], [1 for _ in inputs])


def handle(config: ModelConfig, backend: Any) -> ModelHandle:
    return ModelHandle(config, backend, Limiter(1, 1, None))


def test_the_fake_backend_generates_tokenizes_and_embeds_but_reports_no_logprobs() -> None:
    abilities = Abilities.of(FakeBackend(FakeConfig(id="f", embedding_dimensions=4)))
    assert abilities.generator() is not None
    assert abilities.tokenizing is not None
    assert abilities.embedder() is not None
    assert abilities.replicated is None
    assert abilities.logprobs is False


@pytest.mark.parametrize("backend_type", [UpstreamBackend, OllamaBackend])
def test_upstream_backends_are_replicated_generators_without_a_tokenizer(
    backend_type: type[UpstreamBackend] | type[OllamaBackend],
) -> None:
    url = ["http://127.0.0.1:9", "http://h:1"]
    backend = (
        UpstreamBackend(UpstreamConfig(id="u", url=url))
        if backend_type is UpstreamBackend
        else OllamaBackend(OllamaConfig(id="u", url=url))
    )
    abilities = Abilities.of(backend)
    assert abilities.generator() is backend
    assert abilities.tokenizing is None
    assert abilities.replicated is not None
    assert set(abilities.replicated.replica_states()) == {"http://127.0.0.1:9", "http://h:1"}


def test_an_ollama_embedding_model_does_not_generate() -> None:
    backend = OllamaBackend(OllamaConfig(id="e", url="http://127.0.0.1:9", embedding=True))
    model = handle(backend.config, backend)
    assert isinstance(backend, Generating)  # the class can; this model is configured to embed
    assert model.embedder() is backend
    with pytest.raises(InvalidRequestError, match="is an embedding model; use /v1/embeddings"):
        model.generator()


@pytest.mark.parametrize("loaded", [True, False])
def test_a_backend_without_generate_is_refused_as_an_embedding_model(loaded: bool) -> None:
    backend = EmbedOnly(loaded)
    model = handle(FakeConfig(id="emb"), backend)
    assert not isinstance(backend, Generating)
    assert (model.embedder() is backend) is loaded
    with pytest.raises(InvalidRequestError, match="is an embedding model") as raised:
        model.generator()
    assert raised.value.param == "model"


def test_abilities_follow_a_new_backend_object() -> None:
    config = FakeConfig(id="f")
    model = handle(config, EmbedOnly(True))
    assert model.tokenizer() is None
    model.backend = FakeBackend(config)
    assert model.tokenizer() is model.backend
