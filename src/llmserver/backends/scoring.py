"""What a model that scores (query, document) pairs offers: the kinds of scorer, the answer
type, and the bi-encoder arithmetic (cosine of two embeddings) that several backends share.

A cross-encoder or a GGUF reranker reads each pair together and gives one relevance score; an
embedding model used as a bi-encoder embeds each text once and scores a pair by the cosine of
the two vectors. An upstream engine scores on the far side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llmserver.errors import ContextLengthError

#: how a score was made: cosine of embeddings, a cross-encoder's head, llama.cpp's rank
#: pooling, or an upstream engine's own reranker
ScorerKind = Literal["bi-encoder", "cross-encoder", "rank-pooling", "upstream"]

#: one (query, document) pair
Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ScoringSpec:
    """What a scoring model offers: its kind, and the longest input it reads in tokens (a
    pair for a cross-encoder or reranker, one text for a bi-encoder; 0: unknown here)."""

    kind: ScorerKind
    max_input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """One relevance score per pair (higher is more relevant), and the tokens the model read
    (for usage)."""

    scores: list[float]
    tokens: int


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine similarity of two vectors, summed in float64 so the same vectors always
    give the same score (0.0 for a zero vector)."""
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm > 0 else 0.0


def unique_texts(pairs: Sequence[Pair]) -> list[str]:
    """Every text of the pairs once (queries first), so each is embedded once."""
    seen: dict[str, None] = {}
    for query, _ in pairs:
        seen.setdefault(query)
    for _, document in pairs:
        seen.setdefault(document)
    return list(seen)


def bi_encoder_scores(
    pairs: Sequence[Pair],
    texts: Sequence[str],
    vectors: Sequence[Sequence[float]],
    counts: Sequence[int],
) -> ScoreResult:
    """Scores of ``pairs`` from the vectors of ``texts`` (as :func:`unique_texts` lists them,
    each embedded once: the usage is their tokens)."""
    index = {text: i for i, text in enumerate(texts)}
    scores = [cosine(vectors[index[q]], vectors[index[d]]) for q, d in pairs]
    return ScoreResult(scores, sum(counts))


def check_pair_lengths(counts: Sequence[int], limit: int, per: str = "query and document") -> None:
    """400 (context length) for the first pair (document) longer than ``limit`` tokens."""
    for index, count in enumerate(counts):
        if count > limit:
            raise ContextLengthError(
                f"This model reads at most {limit} tokens per {per}, but document {index} "
                f'gives {count} tokens. Shorten it, or send "truncate": true to cut it to fit.',
                param="documents",
            )


def longest_per_pair(
    pairs: Sequence[Pair], texts: Sequence[str], counts: Sequence[int]
) -> list[int]:
    """For a bi-encoder: each pair's longer text, in tokens (``counts`` by ``texts``)."""
    index = {text: i for i, text in enumerate(texts)}
    return [max(counts[index[q]], counts[index[d]]) for q, d in pairs]
