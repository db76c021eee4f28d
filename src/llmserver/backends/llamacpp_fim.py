"""A GGUF model's fill-in-the-middle tokens, from its metadata or llama.cpp's own detection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmserver.backends.base import FimTokens

#: (current key, key before llama.cpp renamed it, llama.cpp's accessor name), per FIM role
_ROLES = (
    ("fim_pre", "prefix", "llama_vocab_fim_pre"),
    ("fim_suf", "suffix", "llama_vocab_fim_suf"),
    ("fim_mid", "middle", "llama_vocab_fim_mid"),
    ("fim_rep", "", "llama_vocab_fim_rep"),
    ("fim_sep", "", "llama_vocab_fim_sep"),
)


def _token_id(meta: dict[str, str], keys: tuple[str, str], detected: Callable[[], int]) -> int:
    for key in keys:
        value = meta.get(f"tokenizer.ggml.{key}_token_id") if key else None
        if value is not None and value.lstrip("-").isdigit():
            return int(value)
    return detected()


def _detector(model: Any, accessor: str) -> Callable[[], int]:
    """llama.cpp's own answer: it also knows FIM tokens by their text (``<|fim_prefix|>``,
    ``<PRE>``...) in files whose metadata does not name them."""
    import llama_cpp

    return lambda: int(getattr(llama_cpp, accessor)(model.vocab))


def fim_tokens(model: Any) -> FimTokens | None:
    """The FIM tokens of a loaded ``LlamaModel`` (``tokenizer.ggml.fim_pre_token_id`` and its
    kin, or the older ``prefix_token_id``...); None without a prefix, suffix and middle."""
    meta = model.metadata()
    ids = [_token_id(meta, (new, old), _detector(model, name)) for new, old, name in _ROLES]
    if any(i < 0 for i in ids[:3]):
        return None
    pre, suf, mid, rep, sep = (model.token_get_text(i) if i >= 0 else "" for i in ids)
    return FimTokens(pre, suf, mid, rep, sep)
