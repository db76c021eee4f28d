"""What llama.cpp allocated for a model: the buffer sizes it reports while loading.

llama.cpp has no API that returns the sizes of its compute and KV buffers; it states each one
in a log line as it allocates it (``CPU KV buffer size = 22.50 MiB``, ``CUDA0 compute buffer
size = ...``, ``CPU_Mapped model buffer size = ...``). While a model loads, the process's
llama.cpp log callback is wrapped to read those lines (and pass every line on as before), so
residency learns what the model really holds on each device, GPUs included.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: a buffer allocation line: the buffer's device, its kind and its size
BUFFER_LINE = re.compile(
    r"\b(\w+)\s+(?:model|KV|compute|output|RS|LoRA) buffer size =\s*([\d.]+) MiB"
)


def device_of(buffer: str) -> str:
    """Residency's device name for a llama.cpp buffer type: ``CUDA1`` is ``cuda:1``; the CPU's
    buffers (``CPU``, ``CPU_Mapped``, ``CUDA_Host`` pinned memory) are ``host``."""
    match = re.fullmatch(r"(CUDA|ROCm|Vulkan|Metal|SYCL)(\d*)", buffer)
    if match is None:
        return "host"
    return f"cuda:{match.group(2) or 0}" if match.group(1) == "CUDA" else buffer.lower()


def parse_buffers(lines: list[str]) -> dict[str, int]:
    """Bytes by device from llama.cpp's buffer-size lines."""
    out: dict[str, int] = {}
    for line in lines:
        for buffer, mib in BUFFER_LINE.findall(line):
            device = device_of(buffer)
            out[device] = out.get(device, 0) + int(float(mib) * 2**20)
    return out


@contextmanager
def buffer_sizes() -> Iterator[dict[str, int]]:
    """Collect the buffer sizes llama.cpp reports inside the block into the yielded dict."""
    import llama_cpp
    from llama_cpp import _logger

    lines: list[str] = []
    previous: Any = _logger.llama_log_callback

    def record(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))
        previous(level, text, user_data)

    # held in a local for the whole block: ctypes frees a callback nobody references
    capture = llama_cpp.llama_log_callback(record)
    sizes: dict[str, int] = {}
    llama_cpp.llama_log_set(capture, ctypes.c_void_p(0))
    try:
        yield sizes
    finally:
        llama_cpp.llama_log_set(previous, ctypes.c_void_p(0))
        sizes.update(parse_buffers(lines))
