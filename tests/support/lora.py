"""A small random LoRA adapter for the default model, in llama.cpp's adapter format (what its
``convert_lora_to_gguf.py`` writes), written with the ``gguf`` package."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

#: SmolLM2-135M's width: its attention projections are 576 x 576
WIDTH = 576


def write_lora(out: Path, layers: int = 30, rank: int = 8, alpha: float = 16.0) -> Path:
    """Write to ``out`` an adapter of random ``lora_a``/``lora_b`` pairs for the query and
    output projections of the first ``layers`` layers (large enough to change the answers)."""
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(out, arch="llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for layer in range(layers):
        for name in ("attn_q", "attn_output"):
            base = f"blk.{layer}.{name}.weight"
            # ggml's shapes are numpy's reversed: a is (in, rank), b is (rank, out)
            a = rng.normal(0.0, 0.5, (rank, WIDTH)).astype(np.float32)
            b = rng.normal(0.0, 0.5, (WIDTH, rank)).astype(np.float32)
            writer.add_tensor(f"{base}.lora_a", a)
            writer.add_tensor(f"{base}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
