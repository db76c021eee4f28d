"""What a model can do, decided in one place: ``/v1/models``, ``/api/show`` and the service's
own checks ask here, so no surface guesses.

Each capability is a fact about the model as it is configured and (where that matters) loaded:

- ``completion``, ``chat``: the model generates text (and is not an embedding model);
- ``tools``: a chat model takes tools, natively where its template teaches a format, else in
  the generic JSON format the server teaches it;
- ``insert``: a fill-in-the-middle format is known (:func:`llmserver.core.fim.fim_format`);
- ``embedding``: the model serves ``/v1/embeddings``;
- ``thinking``: the model has a thought format, from its config's ``reasoning`` or detected
  from its chat template (:func:`llmserver.core.reasoning.reasoning_format`);
- ``rerank``: the model is a reranker (a cross-encoder, a GGUF reranker, an upstream's), shown
  as a reranker only; an embedding model reranks too (as a bi-encoder) but is shown as what
  it is, an embedding model;
- ``vision``: not served by any backend yet.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from llmserver.core.fim import fim_format
from llmserver.core.reasoning import reasoning_format

if TYPE_CHECKING:
    from llmserver.core.manager import ModelHandle


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one model can do; :meth:`names` lists the true ones in this order."""

    completion: bool = False
    chat: bool = False
    tools: bool = False
    insert: bool = False
    embedding: bool = False
    thinking: bool = False
    rerank: bool = False
    vision: bool = False

    def names(self) -> tuple[str, ...]:
        """The names of the capabilities the model has."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name))


def capabilities(handle: ModelHandle) -> Capabilities:
    """The model's capabilities now (a model loaded on demand shows what its config and, once
    loaded, its template say)."""
    inserts = fim_format(handle) is not None
    abilities = handle.abilities()
    reranker = _rerank_config(handle)
    configured = _embedding_config(handle)
    only_embeds = abilities.embedding is not None and abilities.generating is None
    embeds = not reranker and (handle.embedder() is not None or configured or only_embeds)
    # a model that embeds (or reranks) is shown as such only (as Ollama shows them)
    generates = abilities.generator() is not None and not embeds and not reranker
    thinking = generates and reasoning_format(handle) is not None
    return Capabilities(
        completion=generates,
        chat=generates,
        tools=generates,
        insert=generates and inserts,
        embedding=embeds,
        thinking=thinking,
        rerank=reranker,
    )


def context_length(handle: ModelHandle) -> int | None:
    """The model's context in tokens: its loaded prompt format's, an embedding model's input
    limit, a reranker's longest pair, else its configured ``context_size``; None when only an
    upstream engine knows."""
    if handle.prompt_format is not None:
        return handle.prompt_format.context_length
    embedder = handle.embedder()
    spec = embedder.embedding_spec() if embedder is not None else None
    if spec is not None:
        return spec.max_input_tokens
    scorer = handle.abilities().scorer()
    scoring = scorer.scoring_spec() if scorer is not None else None
    if scoring is not None and scoring.max_input_tokens > 0:
        return scoring.max_input_tokens
    configured = getattr(handle.config, "context_size", None)
    return configured if isinstance(configured, int) and configured > 0 else None


def _embedding_config(handle: ModelHandle) -> bool:
    """The config makes this model an embedding model (llama.cpp's, an upstream's
    ``embedding: true``), loaded or not."""
    return getattr(handle.config, "embedding", False) is True


def _rerank_config(handle: ModelHandle) -> bool:
    """The config makes this model a reranker (llama.cpp's or an upstream's ``rerank: true``,
    sentence-transformers' ``task: rerank``), loaded or not."""
    config = handle.config
    return getattr(config, "rerank", False) is True or getattr(config, "task", None) == "rerank"
