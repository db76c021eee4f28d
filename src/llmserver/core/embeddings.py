"""``/v1/embeddings``: validated request -> the model's vectors -> OpenAI's response body.

Truncation to ``dimensions`` and the base64 encoding are done here, once, for every backend.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from llmserver.backends.base import EmbeddingSpec, embedder
from llmserver.errors import InvalidRequestError
from llmserver.core.manager import ModelHandle, ModelManager
from llmserver.surfaces.openai.schemas import EmbeddingRequest
from llmserver.core.service import Usage


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64 form: the vector as little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def shorten(vector: list[float], dimensions: int) -> list[float]:
    """The first ``dimensions`` values, renormalised to unit length (Matryoshka truncation)."""
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head))
    return [v / norm for v in head] if norm > 0 else head


def _check(handle: ModelHandle, spec: EmbeddingSpec, req: EmbeddingRequest) -> None:
    wanted = req.dimensions
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
    tokens = not isinstance(req.input, str) and isinstance(req.inputs()[0], list)
    if tokens and not spec.token_input:
        raise InvalidRequestError(
            f"model '{handle.id}' takes text input only, not token arrays", param="input"
        )


async def create_embeddings(
    manager: ModelManager, req: EmbeddingRequest, usage: Usage
) -> dict[str, Any]:
    """Embed every input on the requested model and build the ``list`` body."""
    handle = manager.resolve(req.model)
    model = embedder(handle.backend)
    spec = model.embedding_spec() if model is not None else None
    if model is None or spec is None:
        raise InvalidRequestError(f"model '{handle.id}' does not serve embeddings", param="model")
    _check(handle, spec, req)
    async with handle.limiter.slot():
        result = await model.embed(req.inputs())
    usage.prompt_tokens = sum(result.token_counts)
    data = []
    for index, vector in enumerate(result.vectors):
        if req.dimensions is not None and req.dimensions != spec.dimensions:
            vector = shorten(vector, req.dimensions)
        encoded: Any = encode_base64(vector) if req.encoding_format == "base64" else vector
        data.append({"object": "embedding", "embedding": encoded, "index": index})
    return {
        "object": "list",
        "data": data,
        "model": handle.id,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    }
