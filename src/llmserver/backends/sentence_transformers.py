"""Models run by sentence-transformers: an embedding model (``SentenceTransformer``) serves
``/v1/embeddings`` and reranks as a bi-encoder; a reranker (``task: rerank``, a
``CrossEncoder``) serves ``/v1/rerank`` (:mod:`llmserver.backends.st_rerank`). Neither chats.

The model loads offline (``local_files_only`` for a directory, ``HF_HUB_OFFLINE=1`` around the
load) so a missing file is an error at start-up, never a download attempt. Encoding runs on one
worker thread; a request's inputs are encoded together in batches of ``batch_size``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from llmserver.backends.base import (
    EmbeddingInput,
    EmbeddingResult,
    EmbeddingSpec,
    ModelLoadError,
    check_input_lengths,
    utf8,
)
from llmserver.backends.scoring import Pair, ScoreResult, ScoringSpec
from llmserver.backends.st_rerank import (
    bi_encoder,
    cross_encoder_limit,
    cross_encoder_scores,
    load_cross_encoder,
)
from llmserver.backends.torch_memory import tensor_bytes
from llmserver.backends.transformers import auto_device
from llmserver.config.model_configs import ModelConfig, SentenceTransformersConfig
from llmserver.errors import EngineError, InvalidRequestError

logger = logging.getLogger("llmserver.backends.sentence_transformers")


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` for the duration of a load, restored afterwards.

    huggingface_hub reads this variable once, when it is first imported, so it takes effect when
    this load is the first use of the hub library in the process; what keeps a directory load
    offline in every case is ``local_files_only``. Set only around the load, so the rest of the
    process keeps whatever the operator chose.
    """
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


class SentenceTransformersBackend:
    """A ``SentenceTransformer`` model: embeds, and (having no ``generate``) never generates."""

    config_type: ClassVar[type[ModelConfig]] = SentenceTransformersConfig
    max_parallel: ClassVar[int] = 1

    def __init__(self, config: SentenceTransformersConfig) -> None:
        self.config = config
        self._model: Any = None
        self._spec: EmbeddingSpec | None = None
        self._scoring: ScoringSpec | None = None
        self._wrap: tuple[list[int], list[int]] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"st-{config.id}")

    async def start(self) -> None:
        """Load the model on a fresh worker thread (so a closed backend can start again)."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"st-{self.config.id}")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        cfg = self.config
        local = Path(cfg.path).expanduser()
        if cfg.torch_threads is not None:
            import torch

            # torch and llama.cpp share one OpenMP runtime; torch's default thread pool makes
            # llama.cpp's decode steps about half as fast (measured; docs/benchmarks.md)
            torch.set_num_threads(cfg.torch_threads)
        with hub_offline():
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ModelLoadError(
                    "sentence-transformers is not installed: pip install 'llmserver[embeddings]'"
                ) from exc
            if cfg.task == "rerank":
                self._model = load_cross_encoder(cfg, auto_device(cfg.device))
                self._scoring = ScoringSpec("cross-encoder", cross_encoder_limit(self._model))
                return
            try:
                self._model = SentenceTransformer(
                    str(local) if local.is_dir() else cfg.path,
                    device=auto_device(cfg.device),
                    local_files_only=local.is_dir(),
                )
            except (OSError, ValueError, RuntimeError) as exc:
                raise ModelLoadError(f"model load failed: {cfg.path}: {exc}") from exc
        model = self._model
        # renamed in sentence-transformers 5; keep working with the older name
        dimension = getattr(model, "get_embedding_dimension", None)
        dims = dimension() if dimension else model.get_sentence_embedding_dimension()
        if not dims:
            raise ModelLoadError(f"{cfg.path} does not declare its embedding dimension")
        self._wrap = _special_tokens(model.tokenizer)
        self._spec = EmbeddingSpec(
            dimensions=int(dims),
            max_input_tokens=int(model.max_seq_length),
            token_input=self._wrap is not None,
            matryoshka=cfg.matryoshka,
        )
        self._scoring = ScoringSpec("bi-encoder", int(model.max_seq_length))

    def embedding_spec(self) -> EmbeddingSpec | None:
        """Dimensions and input limit (known once loaded)."""
        return self._spec

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> EmbeddingResult:
        """Vectors exactly as ``SentenceTransformer.encode`` gives them."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed, list(inputs))

    def _embed(self, inputs: list[EmbeddingInput]) -> EmbeddingResult:
        model, spec = self._model, self._spec
        if model is None or spec is None:
            raise EngineError("model is not loaded")
        if all(isinstance(i, str) for i in inputs):
            texts = [str(i) for i in inputs]
            for text in texts:
                utf8(text)  # an unpaired surrogate is a 400, not the tokenizer's TypeError
            counts = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
            check_input_lengths(counts, spec.max_input_tokens)
            vectors = model.encode(texts, batch_size=self.config.batch_size, convert_to_numpy=True)
            return EmbeddingResult([v.tolist() for v in vectors], counts)
        tokens = [list(i) for i in inputs if not isinstance(i, str)]
        if len(tokens) != len(inputs):
            raise InvalidRequestError(
                "input must be all strings or all token arrays", param="input"
            )
        return self._embed_tokens(tokens, spec)

    def _embed_tokens(self, tokens: list[list[int]], spec: EmbeddingSpec) -> EmbeddingResult:
        """Token arrays: wrapped in the model's special tokens, then the same forward pass."""
        import torch

        model, wrap = self._model, self._wrap
        assert wrap is not None
        vocab = len(model.tokenizer)
        if any(t < 0 or t >= vocab for ids in tokens for t in ids):
            raise InvalidRequestError(f"token ids must be in [0, {vocab})", param="input")
        wrapped = [wrap[0] + ids + wrap[1] for ids in tokens]
        counts = [len(ids) for ids in wrapped]
        check_input_lengths(counts, spec.max_input_tokens)
        out: list[list[float]] = []
        size = self.config.batch_size
        for start in range(0, len(wrapped), size):
            batch = model.tokenizer.pad({"input_ids": wrapped[start : start + size]})
            features = {k: torch.tensor(v, device=model.device) for k, v in batch.items()}
            if "token_type_ids" not in features and _wants_token_types(model):
                features["token_type_ids"] = torch.zeros_like(features["input_ids"])
            with torch.inference_mode():
                vectors = model(features)["sentence_embedding"]
            out += vectors.float().cpu().tolist()
        return EmbeddingResult(out, counts)

    def scoring_spec(self) -> ScoringSpec | None:
        """A cross-encoder, or a bi-encoder for an embedding model (known once loaded)."""
        return self._scoring

    async def score(self, pairs: Sequence[Pair], truncate: bool) -> ScoreResult:
        """One score per pair, on the worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._score, list(pairs), truncate)

    def _score(self, pairs: list[Pair], truncate: bool) -> ScoreResult:
        model, spec = self._model, self._scoring
        if model is None or spec is None:
            raise EngineError("model is not loaded")
        if spec.kind == "cross-encoder":
            return cross_encoder_scores(model, pairs, truncate, self.config.batch_size)
        return bi_encoder(model, pairs, truncate, self.config.batch_size)

    def loaded_memory(self) -> dict[str, int] | None:
        """Bytes of the loaded model's tensors by device."""
        return tensor_bytes(self._model) if self._model is not None else None

    async def health(self) -> bool:
        """Healthy while loaded."""
        return self._model is not None

    async def close(self) -> None:
        """Drop the model."""
        self._model = None
        self._spec = None
        self._scoring = None
        gc.collect()  # the weights are freed now, not at some later collection
        self._executor.shutdown(wait=False)


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]] | None:
    """The special tokens the tokenizer puts before and after one text ([CLS] ... [SEP]).

    Found by encoding a probe with and without them; None when the probe's own tokens do not
    appear unchanged in the middle (then token-array input is not offered).
    """
    probe = "hello world"
    plain: list[int] = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full: list[int] = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return None


def _wants_token_types(model: Any) -> bool:
    return "token_type_ids" in getattr(model.tokenizer, "model_input_names", [])
