"""Embeddings from a GGUF embedding model (``embedding: true``), through ``Llama.embed``, and
scores from it (a bi-encoder) or from a GGUF reranker (``rerank: true``, rank pooling; see
:mod:`llmserver.backends.llamacpp_rank`).

Generation uses the batch engine; an embedding model or a reranker is a separate ``Llama``
object that only pools, on its own worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from llmserver.backends.base import (
    EmbeddingInput,
    EmbeddingResult,
    EmbeddingSpec,
    ModelLoadError,
    check_input_lengths,
    utf8,
)
from llmserver.backends.cpu_threads import usable_cpus
from llmserver.backends.llamacpp_rank import bi_encoder_llama, rank_scores
from llmserver.backends.scoring import Pair, ScoreResult, ScoringSpec
from llmserver.config.model_configs import LlamaCppConfig
from llmserver.errors import InvalidRequestError

if TYPE_CHECKING:
    from llama_cpp import Llama

#: LLAMA_POOLING_TYPE_*
POOLING = {"model": -1, "none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}


class LlamaEmbedder:
    """Pooled, L2-normalised vectors (as llama-server returns them) from one GGUF file."""

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"llamacpp-embed-{config.id}")
        self.llm: Llama | None = None
        #: compute threads: with ``auto`` the usable cores, not adapted (a pooling call is
        #: one short decode, not a stream of steps to adapt between)
        self.threads = 0

    def load(self) -> Llama:
        """Load the model for pooling (blocking: call off the event loop)."""
        from llama_cpp import Llama

        cfg = self.config
        self.threads = usable_cpus() if cfg.threads == "auto" else cfg.threads
        try:
            llm = Llama(
                model_path=str(cfg.path),
                n_ctx=cfg.context_size or 0,  # 0: the trained length
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_batch=min(cfg.batch_size, cfg.ubatch_size),  # a whole input in one pass
                n_gpu_layers=cfg.gpu_layers,
                embedding=True,
                pooling_type=POOLING["rank" if cfg.rerank else cfg.pooling],
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"model load failed: {cfg.path}: {exc}") from exc
        if cfg.rerank and int(llm.pooling_type()) != POOLING["rank"]:
            llm.close()
            raise ModelLoadError(f"{cfg.path} cannot rank-pool: it is not a reranker GGUF")
        if int(llm.pooling_type()) == POOLING["none"]:
            llm.close()
            raise ModelLoadError(
                f"{cfg.path} declares no embedding pooling; set pooling: mean (or cls, last)"
            )
        self.llm = llm
        return llm

    def _limit(self, llm: Llama) -> int:
        return min(llm.n_ctx(), llm.n_batch)

    def spec(self) -> EmbeddingSpec | None:
        """Vector size and input limit, once loaded (None for a reranker)."""
        if self.llm is None or self.config.rerank:
            return None
        return EmbeddingSpec(self.llm.n_embd(), self._limit(self.llm))

    def scoring_spec(self) -> ScoringSpec | None:
        """Rank pooling for a reranker, else a bi-encoder, once loaded."""
        if self.llm is None:
            return None
        if self.config.rerank:
            return ScoringSpec("rank-pooling", self._limit(self.llm))
        return ScoringSpec("bi-encoder", self._limit(self.llm))

    async def score(self, pairs: Sequence[Pair], truncate: bool) -> ScoreResult:
        """One score per pair, on the worker thread."""
        if self.llm is None:
            raise InvalidRequestError(f"model '{self.config.id}' is not loaded", param="model")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._score, list(pairs), truncate
        )

    def _score(self, pairs: list[Pair], truncate: bool) -> ScoreResult:
        assert self.llm is not None
        if self.config.rerank:
            return rank_scores(self.llm, pairs, self._limit(self.llm), truncate)
        return bi_encoder_llama(self.llm, pairs, self._limit(self.llm), truncate)

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> EmbeddingResult:
        """Embed text inputs on the worker thread."""
        spec = self.spec()
        if spec is None:
            raise InvalidRequestError(f"model '{self.config.id}' is not loaded", param="model")
        if not all(isinstance(i, str) for i in inputs):
            raise InvalidRequestError("this model takes text input only", param="input")
        texts = [str(i) for i in inputs]
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._embed, texts, spec.max_input_tokens
        )

    def _embed(self, texts: list[str], limit: int) -> EmbeddingResult:
        assert self.llm is not None
        llm = self.llm
        # counted exactly as Llama.embed tokenizes (BOS as the model wants, no special parsing)
        counts = [len(llm.tokenize(utf8(t))) for t in texts]
        check_input_lengths(counts, limit)
        rows: list[Any] = list(llm.embed(texts, normalize=True, truncate=False))
        return EmbeddingResult([[float(x) for x in row] for row in rows], counts)

    def close(self) -> None:
        """Free the model (blocking)."""
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()
        self._executor.shutdown(wait=False)
