"""LoRA adapters on a llama.cpp context.

An adapter is loaded against a model (``llama_adapter_lora_init``) and set, with its scale, on
a context (``llama_set_adapters_lora``); llama.cpp frees a model's adapters with the model. So
the loaded adapters are kept by the backend that owns the model, one per file: a variant that
shares the model and is loaded again reuses them instead of loading (and leaking) copies.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from llmserver.backends.base import ModelLoadError
from llmserver.config.model_configs import LoraAdapter


def apply_adapters(
    loaded: dict[str, Any], model: Any, ctx: Any, adapters: Sequence[LoraAdapter], model_id: str
) -> None:
    """Set ``adapters`` on ``ctx``; ``loaded`` (file -> adapter) belongs to ``model``'s owner."""
    import llama_cpp

    if not adapters:
        return
    pointers = []
    for adapter in adapters:
        key = str(adapter.path)
        if key not in loaded:
            pointer = llama_cpp.llama_adapter_lora_init(model, key.encode())
            if not pointer:
                raise ModelLoadError(
                    f"LoRA adapter {adapter.path} cannot be applied to model '{model_id}' "
                    "(not a llama.cpp LoRA GGUF for this model's architecture and shapes)"
                )
            loaded[key] = pointer
        pointers.append(loaded[key])
    count = len(pointers)
    array = (llama_cpp.llama_adapter_lora_p_ctypes * count)(*pointers)
    scales = (ctypes.c_float * count)(*(a.scale for a in adapters))
    if llama_cpp.llama_set_adapters_lora(ctx, array, count, scales) != 0:
        raise ModelLoadError(f"llama.cpp refused the LoRA adapters of model '{model_id}'")
