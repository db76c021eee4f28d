"""What a backend can do beyond start, health and close: one small protocol per ability.

The core checks these with ``isinstance`` (never ``getattr`` with a default), so a backend
declares an ability by having its members and a plugin needs nothing else. :class:`Abilities`
holds the answers for one backend object: a runtime protocol check costs tens of µs, so the
core asks once per backend, not once per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, runtime_checkable

from llmserver.backends.base import (
    Delta,
    EmbeddingInput,
    EmbeddingResult,
    EmbeddingSpec,
    GenerationRequest,
    PromptFormat,
)
from llmserver.backends.scoring import Pair, ScoreResult, ScoringSpec


@runtime_checkable
class Generating(Protocol):
    """A backend that generates text (every backend but an embedding-only one)."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Stream deltas; the last one carries ``finish_reason``. Cancelling stops the work."""


@runtime_checkable
class Tokenizing(Protocol):
    """A backend that owns its tokenizer and prompt format (local engines)."""

    def prompt_format(self) -> PromptFormat:
        """The model's chat template, special tokens and context length."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids for a rendered prompt (special tokens parsed, BOS as the model wants)."""


@runtime_checkable
class TokenTools(Protocol):
    """A tokenizing backend that also shows its tokens (``/tokenize``, ``/detokenize``)."""

    def tokenize_text(self, text: str, add_special: bool) -> list[int]:
        """Token ids of ``text`` (special tokens parsed); BOS only when ``add_special``."""

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``, special tokens written out."""

    def token_piece(self, token: int) -> str:
        """One token's text (bytes that are not whole characters replaced)."""


@runtime_checkable
class Embedding(Protocol):
    """A backend that can serve ``/v1/embeddings``."""

    def embedding_spec(self) -> EmbeddingSpec | None:
        """The model's embedding abilities; None when this model serves no embeddings."""

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> EmbeddingResult:
        """Vectors for the inputs. Raise ContextLengthError for an input that is too long."""


@runtime_checkable
class Scoring(Protocol):
    """A backend that scores (query, document) pairs (``/v1/rerank``, ``/v1/score``)."""

    def scoring_spec(self) -> ScoringSpec | None:
        """How this model scores; None when it does not (as configured and loaded)."""

    async def score(self, pairs: Sequence[Pair], truncate: bool) -> ScoreResult:
        """One score per pair. A pair too long for the model is a ContextLengthError unless
        ``truncate``, which cuts the document to fit."""


@runtime_checkable
class ReportsLogprobs(Protocol):
    """A backend that fills :attr:`Delta.logprobs` when ``SamplingParams.logprobs`` asks."""

    logprobs: ClassVar[Literal[True]]


@runtime_checkable
class FollowsThoughts(Protocol):
    """A backend that follows :attr:`GenerationRequest.thought`: ends a thought at its budget
    and applies the request's constraint only after the thought (llama.cpp)."""

    follows_thoughts: ClassVar[Literal[True]]


@runtime_checkable
class Replicated(Protocol):
    """A backend that spreads its model over several replicas (upstream engines)."""

    def replica_states(self) -> dict[str, bool]:
        """Replica URL -> whether it is in rotation (for metrics and status pages)."""


@runtime_checkable
class ReportsMemory(Protocol):
    """A backend whose engine says how much memory its loaded model holds (torch tensors)."""

    def loaded_memory(self) -> dict[str, int] | None:
        """Bytes by device (``host``, ``cuda:N``) the loaded model holds; None: not loaded."""


@runtime_checkable
class ReportsThreads(Protocol):
    """A backend whose engine computes on CPU threads it can count (llama.cpp)."""

    def compute_threads(self) -> int | None:
        """The CPU threads the loaded model computes with now; None: not loaded."""


@runtime_checkable
class SharesWeights(Protocol):
    """A backend that can serve a derived model from another backend's loaded weights."""

    def share_weights(self, base: object) -> None:
        """Use ``base``'s loaded model (when it is of the same engine) at the next start."""


@dataclass(frozen=True, slots=True)
class Abilities:
    """One backend object's optional abilities, each the backend itself or None."""

    generating: Generating | None
    tokenizing: Tokenizing | None
    embedding: Embedding | None
    replicated: Replicated | None
    logprobs: bool
    token_tools: TokenTools | None = None
    scoring: Scoring | None = None
    #: budgets thoughts and constrains only the answer (:class:`FollowsThoughts`)
    thoughts: bool = False
    memory: ReportsMemory | None = None
    sharing: SharesWeights | None = None
    threads: ReportsThreads | None = None

    @classmethod
    def of(cls, backend: object) -> Abilities:
        """Check ``backend`` against every ability protocol."""
        return cls(
            generating=backend if isinstance(backend, Generating) else None,
            tokenizing=backend if isinstance(backend, Tokenizing) else None,
            embedding=backend if isinstance(backend, Embedding) else None,
            replicated=backend if isinstance(backend, Replicated) else None,
            logprobs=isinstance(backend, ReportsLogprobs),
            token_tools=backend if isinstance(backend, TokenTools) else None,
            scoring=backend if isinstance(backend, Scoring) else None,
            thoughts=isinstance(backend, FollowsThoughts),
            memory=backend if isinstance(backend, ReportsMemory) else None,
            sharing=backend if isinstance(backend, SharesWeights) else None,
            threads=backend if isinstance(backend, ReportsThreads) else None,
        )

    def embedder(self) -> Embedding | None:
        """The backend when its model serves embeddings now (a spec may come with the load)."""
        if self.embedding is not None and self.embedding.embedding_spec() is not None:
            return self.embedding
        return None

    def scorer(self) -> Scoring | None:
        """The backend when its model scores pairs itself now (a spec may come with the load)."""
        if self.scoring is not None and self.scoring.scoring_spec() is not None:
            return self.scoring
        return None

    def generator(self) -> Generating | None:
        """The backend when its model generates text; None for an embedding model.

        A backend class that both generates and embeds (or scores) serves an embedding model
        (or a reranker) when it does so and has no tokenizer of its own (an upstream one
        configured with ``embedding: true`` or ``rerank: true``): its engine would not take
        the text.
        """
        if self.generating is None:
            return None
        if self.tokenizing is None and (self.embedder() or self._reranker()) is not None:
            return None
        return self.generating

    def _reranker(self) -> Scoring | None:
        spec = self.scoring.scoring_spec() if self.scoring is not None else None
        return self.scoring if spec is not None and spec.kind != "bi-encoder" else None
