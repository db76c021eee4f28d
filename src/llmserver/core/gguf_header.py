"""A GGUF file's header (metadata and tensor table), parsed without loading the weights.

Array values (the vocabulary, merges) are skipped and shown as empty lists, as Ollama does
without ``verbose``. Used for a model's details (:mod:`llmserver.core.model_info`) and for its
memory estimate before it loads (:mod:`llmserver.core.footprint`).
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: GGUF value types: struct format of the scalar ones
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS |= {11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
#: no sane header has more entries than this (a corrupt file must not make us loop for long)
_MAX_ENTRIES = 1 << 24


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands."""


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    """A GGUF file's metadata, its parameter count (from the tensor table) and header digest."""

    metadata: dict[str, Any]
    parameter_count: int
    digest: str
    #: rows of the token embedding (the vocabulary size); 0 when the file has none
    vocab_size: int = 0


class _Reader:
    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self.hash = hashlib.sha256()

    def take(self, size: int) -> bytes:
        data = self._file.read(size)
        if len(data) != size:
            raise GGUFError("truncated GGUF header")
        self.hash.update(data)
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        size = self.scalar("<Q")
        if size > 1 << 26:
            raise GGUFError("GGUF string too long")
        return self.take(size).decode("utf-8", "replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.scalar("<I"), self.scalar("<Q")
            if count > _MAX_ENTRIES:
                raise GGUFError("GGUF array too long")
            for _ in range(count):
                self.value(item)  # read past it; arrays are shown empty
            return []
        raise GGUFError(f"unknown GGUF value type {kind}")


def read_gguf(path: Path) -> GGUFHeader:
    """Parse the header of a GGUF file (versions 2 and 3)."""
    with path.open("rb") as raw:
        reader = _Reader(raw)
        if reader.take(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        version = reader.scalar("<I")
        if version < 2:
            raise GGUFError(f"GGUF version {version} is not supported")
        n_tensors, n_kv = reader.scalar("<Q"), reader.scalar("<Q")
        if n_tensors > _MAX_ENTRIES or n_kv > _MAX_ENTRIES:
            raise GGUFError("GGUF header too large")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = reader.string()
            metadata[key] = reader.value(reader.scalar("<I"))
        params = vocab = 0
        for _ in range(n_tensors):
            name = reader.string()
            dims = [reader.scalar("<Q") for _ in range(reader.scalar("<I"))]
            reader.take(12)  # type (u32) and offset (u64)
            params += math.prod(dims)
            if name == "token_embd.weight" and len(dims) == 2:
                vocab = dims[1]
        reader.hash.update(struct.pack("<Q", path.stat().st_size))
    return GGUFHeader(metadata, params, reader.hash.hexdigest(), vocab)
