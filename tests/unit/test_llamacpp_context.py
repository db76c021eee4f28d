"""The context a GGUF model gets when its config names none."""

from __future__ import annotations

from pathlib import Path

from llmserver.backends.llamacpp_context import FLOOR, available_memory, choose_context

GIB = 2**30
#: the default model (SmolLM2-135M): 30 layers, 3 KV heads of 64, f16 keys and values
SMOLLM2_PER_TOKEN = 30 * 2 * 3 * 64 * 2
#: an 8B Llama: 32 layers, 8 KV heads of 128
LLAMA_8B_PER_TOKEN = 32 * 2 * 8 * 128 * 2


def test_a_small_model_gets_its_trained_length() -> None:
    assert choose_context(8192, SMOLLM2_PER_TOKEN, 8, 20 * GIB) == 8192


def test_a_long_trained_length_is_halved_until_the_cache_fits() -> None:
    size = choose_context(131072, LLAMA_8B_PER_TOKEN, 8, 16 * GIB)
    assert LLAMA_8B_PER_TOKEN * size * 8 <= 4 * GIB
    assert size == 4096
    assert choose_context(131072, LLAMA_8B_PER_TOKEN, 1, 8 * GIB) == 16384


def test_never_below_the_floor_nor_above_the_training() -> None:
    assert choose_context(131072, LLAMA_8B_PER_TOKEN, 8, 1 * GIB) == FLOOR
    assert choose_context(2048, SMOLLM2_PER_TOKEN, 8, 64 * GIB) == 2048
    assert choose_context(8192, SMOLLM2_PER_TOKEN, 8, None) == FLOOR  # memory unknown


def test_available_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 24000000 kB\nMemAvailable:   1000 kB\n", encoding="ascii")
    assert available_memory(meminfo) == 1000 * 1024
