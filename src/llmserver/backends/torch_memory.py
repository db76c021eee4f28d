"""The memory a loaded PyTorch model's tensors take, by device, as torch reports it."""

from __future__ import annotations

import itertools
from typing import Any


def tensor_bytes(model: Any) -> dict[str, int] | None:
    """Bytes of ``model``'s parameters and buffers on each device (``host`` for the CPU,
    ``cuda:N`` for a GPU); tied weights counted once. ``model`` is a torch module or an object
    holding one as ``.model`` (a CrossEncoder); None when it is neither."""
    module = (
        model if callable(getattr(model, "parameters", None)) else getattr(model, "model", None)
    )
    if module is None or not callable(getattr(module, "parameters", None)):
        return None
    out: dict[str, int] = {}
    seen: set[int] = set()
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        pointer = tensor.data_ptr()
        if pointer in seen:
            continue
        seen.add(pointer)
        device = tensor.device
        name = "host" if device.type == "cpu" else f"{device.type}:{device.index or 0}"
        out[name] = out.get(name, 0) + tensor.numel() * tensor.element_size()
    return out
