"""How much memory a model takes: estimated from its files before it loads, measured after.

A footprint is bytes per device: ``host`` (the process's RAM) and ``cuda:N`` (a GPU). The
estimate is what residency (:mod:`llmserver.core.residency`) reserves before a load; the
measurement (the process's resident memory growth over the load and warm-up) replaces it once
the model has loaded, and is reserved for the model's next load in its place.

- llama.cpp: the GGUF file (weights, memory-mapped), the KV cache (context cells of every slot
  times the bytes one token takes, from the file's metadata: layers, heads, KV heads, head size,
  f16 cells) and a compute-buffer allowance (the logits or attention scores of one micro-batch,
  whichever is larger, plus its activations). Offloaded layers are charged to ``cuda:0``.
- sentence-transformers and Transformers: the weight files' size, scaled to the dtype loaded.
- vLLM: its ``gpu_memory_utilization`` share of the GPU budget (vLLM takes that much up front).
- Models served elsewhere (upstream, Ollama) and the fake backend: nothing here (the fake one
  declares ``memory_bytes`` for tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmserver.backends.llamacpp_context import (
    available_memory,
    choose_context,
    kv_bytes_for,
)
from llmserver.config.model_configs import ModelConfig
from llmserver.core.gguf_header import GGUFError, GGUFHeader, read_gguf

logger = logging.getLogger("llmserver.models")

HOST = "host"
GPU0 = "cuda:0"
#: backends whose memory is this process's and is measured over a load
MEASURED_BACKENDS = frozenset({"llamacpp", "transformers", "sentence_transformers", "vllm"})
#: slots of a llama.cpp model whose config sets none (the backend's DEFAULT_PARALLEL)
LLAMACPP_SLOTS = 8
#: bytes per weight for each torch dtype name
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "auto": 0}
#: weight files a Hugging Face model directory holds
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
#: a torch model takes more than its weights (buffers, the tokenizer, allocator slack)
TORCH_OVERHEAD = 1.1


@dataclass(frozen=True, slots=True)
class Footprint:
    """Bytes a model holds on each device it uses."""

    by_device: dict[str, int] = field(default_factory=dict)

    def on(self, device: str) -> int:
        """Bytes on ``device`` (0 when the model does not use it)."""
        return self.by_device.get(device, 0)

    @property
    def total(self) -> int:
        """Bytes on every device together."""
        return sum(self.by_device.values())

    @property
    def gpu(self) -> int:
        """Bytes on GPUs."""
        return sum(v for k, v in self.by_device.items() if k != HOST)

    def describe(self) -> str:
        """``1.2 GiB host, 8.0 GiB cuda:0``, for logs and error messages."""
        parts = [f"{gib(v)} {k}" for k, v in sorted(self.by_device.items()) if v]
        return ", ".join(parts) or "no memory"


def gib(value: int) -> str:
    """Bytes as a short human figure (MiB below a GiB)."""
    if abs(value) < 2**30:
        return f"{value / 2**20:.0f} MiB"
    return f"{value / 2**30:.1f} GiB"


def estimate(config: ModelConfig, gpu_budget: int | None = None) -> Footprint:
    """What ``config``'s model will take once loaded, from its files; an unreadable file is 0
    (the load then fails on its own, with its own message)."""
    backend = config.backend
    try:
        if backend == "llamacpp":
            return _llamacpp(config)
        if backend in ("transformers", "sentence_transformers"):
            return _torch(config)
        if backend == "vllm":
            share = float(getattr(config, "gpu_memory_utilization", 0.9))
            return Footprint({GPU0: int(gpu_budget * share)} if gpu_budget else {})
        if backend == "fake":
            return Footprint({HOST: int(getattr(config, "memory_bytes", 0))})
    except (OSError, GGUFError, ValueError) as exc:
        logger.warning("cannot estimate the memory of model %s: %s", config.id, exc)
    return Footprint()


def _int(meta: dict[str, Any], key: str, default: int = 0) -> int:
    value = meta.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _llamacpp(config: ModelConfig) -> Footprint:
    path = Path(getattr(config, "path"))  # noqa: B009  (LlamaCppConfig, not imported here)
    header = read_gguf(path)
    kv_per_token, vocab, heads, embd, ff, layers, trained = _shape(header)
    pools = bool(getattr(config, "embedding", False) or getattr(config, "rerank", False))
    slots = 1 if pools else (config.max_concurrent or LLAMACPP_SLOTS)
    context = getattr(config, "context_size", None)
    if context is None:
        if pools:
            context = trained
        else:
            context = choose_context(trained, kv_per_token, slots, available_memory())
    batch = int(getattr(config, "batch_size", 2048))
    ubatch = min(int(getattr(config, "ubatch_size", 512)), max(batch, slots))
    kv = kv_per_token * context * slots
    # the graph allocator reuses memory: the largest tensor of a micro-batch (the logits, or the
    # attention scores without flash attention) plus the activations flowing through a layer
    flash = getattr(config, "uses_flash_attn", False)
    scores = 0 if flash else context * heads
    compute = 4 * ubatch * (max(0 if pools else vocab, scores) + 3 * embd + 2 * ff)
    output = 0 if pools else 4 * vocab * slots
    # a derived model uses its base's weights; its adapters are its own
    weights = 0 if config.derived_from else path.stat().st_size
    weights += sum(a.path.stat().st_size for a in getattr(config, "adapters", ()))
    draft = getattr(getattr(config, "speculative", None), "draft_model", None)
    if draft is not None:  # a draft model: its weights and a KV stream per slot of its own
        weights += Path(draft).stat().st_size
        kv += _shape(read_gguf(Path(draft)))[0] * context * slots
    on_gpu = _offloaded(int(getattr(config, "gpu_layers", 0)), layers)
    if on_gpu <= 0:
        return Footprint({HOST: weights + kv + compute + output})
    gpu_weights = int(weights * on_gpu)
    return Footprint({HOST: weights - gpu_weights + output, GPU0: gpu_weights + kv + compute})


def _shape(header: GGUFHeader) -> tuple[int, int, int, int, int, int, int]:
    """KV bytes per token, vocabulary, heads, embedding, feed-forward width, layers and trained
    context of a GGUF model."""
    meta = header.metadata
    arch = str(meta.get("general.architecture", ""))
    layers = _int(meta, f"{arch}.block_count")
    heads = _int(meta, f"{arch}.attention.head_count", 1)
    # some architectures give per-layer arrays (read as empty lists): then as many as heads
    heads_kv = _int(meta, f"{arch}.attention.head_count_kv", heads)
    embd = _int(meta, f"{arch}.embedding_length")
    key, value = (
        meta.get(f"{arch}.attention.key_length"),
        meta.get(f"{arch}.attention.value_length"),
    )
    if isinstance(key, int) and isinstance(value, int):
        # the head size is given outright (it need not be embedding / heads)
        kv_per_token = layers * heads_kv * (key + value) * 2
    else:
        kv_per_token = kv_bytes_for(layers, heads, heads_kv, embd)
    vocab = _int(meta, f"{arch}.vocab_size", header.vocab_size)
    ff = _int(meta, f"{arch}.feed_forward_length")
    trained = _int(meta, f"{arch}.context_length", 4096)
    return kv_per_token, vocab, heads, embd, ff, layers, trained


def _offloaded(gpu_layers: int, layers: int) -> float:
    """The share of the weights a ``gpu_layers`` setting puts on the GPU."""
    if gpu_layers == 0 or layers <= 0:
        return 0.0
    if gpu_layers < 0:
        return 1.0
    return min(1.0, gpu_layers / (layers + 1))  # llama.cpp counts the output layer too


def _torch(config: ModelConfig) -> Footprint:
    source = Path(str(getattr(config, "path")))  # noqa: B009
    device = str(getattr(config, "device", None) or "cpu")
    where = HOST if device.startswith("cpu") else (GPU0 if device == "cuda" else device)
    if source.suffix.lower() == ".gguf":
        # Transformers dequantizes a GGUF file: every parameter becomes a float
        count = read_gguf(source).parameter_count
        width = DTYPE_BYTES.get(str(getattr(config, "dtype", "auto")), 0) or 4
        return Footprint({where: int(count * width * TORCH_OVERHEAD)})
    if not source.is_dir():
        return Footprint()  # a hub id: nothing to read before the load
    files = [p for p in source.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    stored = sum(p.stat().st_size for p in _one_format(files))
    scale = _dtype_scale(source, str(getattr(config, "dtype", "auto")), where)
    return Footprint({where: int(stored * scale * TORCH_OVERHEAD)})


def _one_format(files: list[Path]) -> list[Path]:
    """Safetensors when a directory holds them, else the other weight files (directories often
    carry both formats of the same weights; only one is loaded)."""
    safe = [p for p in files if p.suffix == ".safetensors"]
    return safe or files


def _dtype_scale(source: Path, dtype: str, where: str) -> float:
    """Loaded bytes per stored byte: the stored dtype (config.json's ``torch_dtype``) against the
    loaded one (``auto``: float32 on a CPU, as stored on a GPU)."""
    try:
        stored_name = json.loads((source / "config.json").read_text("utf-8")).get("torch_dtype")
    except (OSError, ValueError, AttributeError):
        stored_name = None
    stored = DTYPE_BYTES.get(str(stored_name), 4) or 4
    loaded = DTYPE_BYTES.get(dtype, 0) or (4 if where == HOST else stored)
    return loaded / stored


def rss_bytes(status: Path = Path("/proc/self/status")) -> int | None:
    """The process's resident memory (Linux ``VmRSS``); None where it cannot be read."""
    try:
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def measured(estimated: Footprint, host_growth: int) -> Footprint:
    """The footprint after a load: the host share is what the process's memory grew by; a GPU
    share stays as estimated (no engine-neutral reading of GPU memory is taken)."""
    by_device = dict(estimated.by_device)
    by_device[HOST] = max(0, host_growth)
    return Footprint(by_device)


class Meter:
    """Measures loads by the process's memory growth, one load at a time: a load that another
    overlapped is not measured (the growth would mix the two models)."""

    def __init__(self) -> None:
        self._running = 0
        self._started = 0

    def start(self) -> tuple[int | None, int]:
        """Note a load's start: (resident bytes now or None when another load runs, ticket)."""
        alone = self._running == 0
        self._running += 1
        self._started += 1
        return (rss_bytes() if alone else None), self._started

    def finish(self, start: tuple[int | None, int]) -> int | None:
        """The bytes the process grew by since ``start``; None when not measurable."""
        self._running -= 1
        before, ticket = start
        if before is None or ticket != self._started:
            return None
        after = rss_bytes()
        return None if after is None else after - before


def describe_source(config: ModelConfig) -> str:
    """Backend, file or URL and size of a model, for the line logged before it loads."""
    parts = [f"backend {config.backend}"]
    source = getattr(config, "path", None) or getattr(config, "url", None)
    if isinstance(source, list):
        parts.append(", ".join(source))
    elif source is not None:
        parts.append(str(source))
        size = _size_on_disk(Path(str(source)))
        if size is not None:
            parts.append(f"{size / 1e6:.1f} MB")
    return ", ".join(parts)


def _size_on_disk(path: Path) -> int | None:
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        pass
    return None


def release_memory() -> None:
    """Collect cycles and hand freed heap pages back to the OS, so an unload shows in RSS."""
    gc.collect()
    # not glibc: the memory is still free for reuse, just not returned to the OS
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
