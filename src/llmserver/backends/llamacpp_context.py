"""The context a GGUF model gets when its config names none: the length it was trained for,
where the memory for its KV cache allows.

The KV cache is allocated whole when the context is made: ``context_size`` cells for each of
``max_concurrent`` sequences, each cell holding a key and a value of every KV head in every
layer. A model trained for 128k tokens with 8 slots would ask for far more than a home machine
has, so the trained length is halved until the cache fits in a quarter of the memory the
machine has available, and never goes below :data:`FLOOR` (the old default) unless the model
was trained for less.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger("llmserver.backends.llamacpp")

#: the smallest context chosen on the model's behalf (the default before the trained length)
FLOOR = 4096
#: the share of available memory the KV cache may take when the size is chosen for the user
MEMORY_SHARE = 4
#: bytes of one cached element (llama.cpp's default KV type, f16)
KV_ELEMENT_BYTES = 2


def kv_bytes_per_token(model: Any) -> int:
    """Bytes one token's keys and values take in every layer of the loaded ``model``."""
    import llama_cpp

    return kv_bytes_for(
        layers=llama_cpp.llama_model_n_layer(model),
        heads=llama_cpp.llama_model_n_head(model),
        heads_kv=llama_cpp.llama_model_n_head_kv(model),
        embedding=llama_cpp.llama_model_n_embd(model),
    )


def kv_bytes_for(
    layers: int, heads: int, heads_kv: int, embedding: int, element_bytes: int = KV_ELEMENT_BYTES
) -> int:
    """Bytes one token's keys and values take: a key and a value of every KV head (each
    ``embedding / heads`` wide) in every layer. The same sum serves a loaded model and a GGUF
    file's metadata read before the load (:mod:`llmserver.core.footprint`)."""
    head_size = embedding // max(1, heads)
    return int(layers * 2 * heads_kv * head_size * element_bytes)


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``, else physical
    memory); None where neither can be read."""
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def choose_context(trained: int, per_token: int, sequences: int, memory: int | None) -> int:
    """The context size per sequence: ``trained`` halved until the KV cache of all
    ``sequences`` fits in 1/:data:`MEMORY_SHARE` of ``memory``, at least :data:`FLOOR`."""
    floor = min(FLOOR, trained) if trained > 0 else FLOOR
    if memory is None or trained <= 0:
        return floor
    size = trained
    budget = memory // MEMORY_SHARE
    while size > floor and per_token * size * sequences > budget:
        size //= 2
    return max(size, floor)


def default_context(model: Any, model_id: str, sequences: int) -> int:
    """The context for a loaded model whose config sets no ``context_size``; logs the choice."""
    import llama_cpp

    trained = int(llama_cpp.llama_model_n_ctx_train(model))
    per_token = kv_bytes_per_token(model)
    memory = available_memory()
    size = choose_context(trained, per_token, sequences, memory)
    logger.info(
        "%s: context_size %d (trained for %d; KV cache %.0f MiB for %d sequences)",
        model_id,
        size,
        trained,
        per_token * size * sequences / 2**20,
        sequences,
    )
    return size
