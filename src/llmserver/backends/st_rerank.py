"""Scoring with sentence-transformers models: a ``CrossEncoder`` reads each (query, document)
pair together; a ``SentenceTransformer`` scores as a bi-encoder (cosine of the two vectors).

Both run on the backend's worker thread. Scores are what the model gives (a cross-encoder's
default activation, a sigmoid for one label, is applied as ``CrossEncoder.predict`` does), the
same for the same input: inference only, no sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmserver.backends.base import ModelLoadError
from llmserver.backends.scoring import (
    Pair,
    ScoreResult,
    bi_encoder_scores,
    check_pair_lengths,
    longest_per_pair,
    unique_texts,
)
from llmserver.config.model_configs import SentenceTransformersConfig


def load_cross_encoder(cfg: SentenceTransformersConfig, device: str) -> Any:
    """A ``CrossEncoder`` from a local directory (never a download) or a hub id (blocking)."""
    from sentence_transformers import CrossEncoder

    local = Path(cfg.path).expanduser()
    try:
        return CrossEncoder(
            str(local) if local.is_dir() else cfg.path,
            device=device,
            local_files_only=local.is_dir(),
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"model load failed: {cfg.path}: {exc}") from exc


def cross_encoder_limit(model: Any) -> int:
    """The longest pair the cross-encoder reads, in tokens."""
    # renamed max_seq_length in sentence-transformers 5 (max_length is deprecated there)
    limit = getattr(model, "max_seq_length", None) or getattr(model, "max_length", None)
    return int(limit or model.tokenizer.model_max_length)


def pair_token_counts(tokenizer: Any, pairs: Sequence[Pair]) -> list[int]:
    """Tokens of each pair as the cross-encoder reads it (special tokens included)."""
    if not pairs:
        return []
    encoded = tokenizer([q for q, _ in pairs], [d for _, d in pairs], truncation=False)
    return [len(ids) for ids in encoded["input_ids"]]


def cross_encoder_scores(
    model: Any, pairs: Sequence[Pair], truncate: bool, batch_size: int
) -> ScoreResult:
    """``CrossEncoder.predict`` over the pairs in batches; a pair past the model's length is a
    400 unless ``truncate`` (then the tokenizer cuts it, as ``predict`` always would)."""
    limit = cross_encoder_limit(model)
    counts = pair_token_counts(model.tokenizer, pairs)
    if not truncate:
        check_pair_lengths(counts, limit)
    scores = model.predict(
        [list(p) for p in pairs],
        batch_size=batch_size,
        show_progress_bar=False,
        convert_to_numpy=True,
    )
    values = [float(v) for v in scores.reshape(len(pairs), -1)[:, 0]]
    return ScoreResult(values, sum(min(c, limit) for c in counts))


def bi_encoder(model: Any, pairs: Sequence[Pair], truncate: bool, batch_size: int) -> ScoreResult:
    """Cosine scores from a ``SentenceTransformer``: each text embedded once; a text past the
    model's input length is a 400 unless ``truncate`` (``encode`` then cuts it)."""
    texts = unique_texts(pairs)
    limit = int(model.max_seq_length)
    counts = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    if not truncate:
        check_pair_lengths(longest_per_pair(pairs, texts, counts), limit, "text")
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    rows = [v.tolist() for v in vectors]
    return bi_encoder_scores(pairs, texts, rows, [min(c, limit) for c in counts])
