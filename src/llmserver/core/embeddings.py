"""Embeddings on a model that serves them: checks, the slot, Matryoshka truncation, usage."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmserver.backends.base import EmbeddingSpec
from llmserver.core.manager import ModelHandle
from llmserver.core.requests import EmbedInputs
from llmserver.core.usage import Usage
from llmserver.errors import InvalidRequestError


@dataclass(slots=True)
class EmbedResult:
    """One vector per input, the model that made them and the tokens it read."""

    model: str
    vectors: list[list[float]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


def shorten(vector: list[float], dimensions: int) -> list[float]:
    """The first ``dimensions`` values, renormalised to unit length (Matryoshka truncation)."""
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head))
    return [v / norm for v in head] if norm > 0 else head


def _check(
    handle: ModelHandle, spec: EmbeddingSpec, inputs: EmbedInputs, wanted: int | None
) -> None:
    if wanted is not None and wanted != spec.dimensions:
        if not spec.matryoshka:
            raise InvalidRequestError(
                f"model '{handle.id}' gives {spec.dimensions}-dimensional vectors and does not "
                "support other dimensions",
                param="dimensions",
            )
        if wanted > spec.dimensions:
            raise InvalidRequestError(
                f"dimensions must be at most {spec.dimensions} for model '{handle.id}'",
                param="dimensions",
            )
    if inputs and not isinstance(inputs[0], str) and not spec.token_input:
        raise InvalidRequestError(
            f"model '{handle.id}' takes text input only, not token arrays", param="input"
        )


async def embed(handle: ModelHandle, inputs: EmbedInputs, dimensions: int | None) -> EmbedResult:
    """Embed every input on ``handle``'s model (in one of its slots)."""
    model = handle.embedder()
    spec = model.embedding_spec() if model is not None else None
    if model is None or spec is None:
        raise InvalidRequestError(f"model '{handle.id}' does not serve embeddings", param="model")
    _check(handle, spec, inputs, dimensions)
    async with handle.limiter.slot():
        result = await model.embed(inputs)
    out = EmbedResult(handle.id)
    out.usage.prompt_tokens = sum(result.token_counts)
    for vector in result.vectors:
        if dimensions is not None and dimensions != spec.dimensions:
            vector = shorten(vector, dimensions)
        out.vectors.append(vector)
    return out
