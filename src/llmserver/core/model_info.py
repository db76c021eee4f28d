"""What a model is, read from the model itself: GGUF metadata, parameter count, quantization,
size, a stable digest, capabilities (for Ollama's ``/api/tags``, ``/api/show``, ``/api/ps``).

A GGUF file's header (metadata and tensor table) is parsed here without loading the weights;
array values (the vocabulary, merges) are skipped and shown as empty lists, as Ollama does
without ``verbose``. Results are cached per file (path, size, mtime).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmserver.config.model_configs import ModelConfig
from llmserver.core.gguf_header import GGUFError as GGUFError
from llmserver.core.gguf_header import GGUFHeader as GGUFHeader
from llmserver.core.gguf_header import read_gguf as read_gguf
from llmserver.core.views import ModelView

#: llama.cpp's ``llama_ftype`` numbers (``general.file_type``) and their names
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
}  # fmt: skip


def human_count(count: int) -> str:
    """A parameter count as Ollama shows it: ``134.52M``, ``7.6B``."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    if count >= 1_000:
        return f"{count / 1e3:.0f}K"
    return str(count)


@dataclass(frozen=True, slots=True)
class ModelDetails:
    """A model with what its file says about it. Unknown values are empty strings or None."""

    view: ModelView
    format: str
    family: str
    parameter_size: str
    quantization: str
    context_length: int | None
    chat_template: str | None
    #: GGUF metadata key -> value (arrays empty); empty for models that are not GGUF files
    metadata: dict[str, Any] = field(default_factory=dict)
    #: bytes on disk; 0 when the model is not a local file
    size: int = 0
    #: when the file was last modified (Unix time); the load time for other models
    modified_at: float = 0.0
    #: sha256 hex digest: of the GGUF header and size, else of the model's configuration
    digest: str = ""
    capabilities: tuple[str, ...] = ()
    embedding_length: int | None = None
    #: the configured sampling defaults, in Ollama's option names
    parameters: dict[str, Any] = field(default_factory=dict)


class ModelInfo:
    """Reads and caches each model's details."""

    def __init__(self) -> None:
        self._gguf: dict[tuple[str, int, float], GGUFHeader | None] = {}

    def _header(self, path: Path) -> GGUFHeader | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_size, stat.st_mtime)
        if key not in self._gguf:
            try:
                self._gguf[key] = read_gguf(path)
            except (OSError, GGUFError):
                self._gguf[key] = None
        return self._gguf[key]

    async def details(
        self, config: ModelConfig, view: ModelView, chat_template: str | None
    ) -> ModelDetails:
        """The details of one model (the file is read off the event loop, once)."""
        path = _gguf_path(config)
        header = await asyncio.to_thread(self._header, path) if path is not None else None
        capabilities = view.capabilities
        d = config.defaults
        parameters: dict[str, Any] = {"temperature": d.temperature, "top_p": d.top_p}
        parameters |= {"top_k": d.top_k, "min_p": d.min_p, "repeat_penalty": d.repeat_penalty}
        if d.max_tokens is not None:
            parameters["num_predict"] = d.max_tokens
        if header is None:
            digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()
            return ModelDetails(
                view=view,
                format=view.backend,
                family="",
                parameter_size="",
                quantization="",
                context_length=view.context_length,
                chat_template=chat_template,
                modified_at=view.loaded_at,
                digest=digest,
                capabilities=capabilities,
                parameters=parameters,
            )
        assert path is not None
        meta = header.metadata
        arch = str(meta.get("general.architecture", ""))
        stat = path.stat()
        trained = meta.get(f"{arch}.context_length")
        embedding = meta.get(f"{arch}.embedding_length")
        count = meta.get("general.parameter_count", header.parameter_count)
        file_type = meta.get("general.file_type")
        return ModelDetails(
            view=view,
            format="gguf",
            family=arch,
            parameter_size=human_count(int(count)),
            quantization=FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else "",
            context_length=view.context_length or (int(trained) if trained else None),
            chat_template=chat_template or meta.get("tokenizer.chat_template"),
            metadata={**meta, "general.parameter_count": int(count)},
            size=stat.st_size,
            modified_at=stat.st_mtime,
            digest=header.digest,
            capabilities=capabilities,
            embedding_length=int(embedding) if isinstance(embedding, int) else None,
            parameters=parameters,
        )


def _gguf_path(config: ModelConfig) -> Path | None:
    path = getattr(config, "path", None)
    if path is None or not str(path).lower().endswith(".gguf"):
        return None
    return Path(path)
