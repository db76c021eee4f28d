"""A Hugging Face tokenizer's fill-in-the-middle tokens, found by the names the code-model
families give them. A marker counts only as an added (special) token, so that a vocabulary
that merely has the characters ``<PRE>`` as a word does not count as a FIM model."""

from __future__ import annotations

from typing import Any

from llmserver.backends.base import FimTokens

#: (prefix, suffix, middle, repository, file separator) as each family's tokenizer spells them
FAMILIES = (
    # Qwen2.5-Coder
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>", "<|file_sep|>"),
    # StarCoder, StarCoder2
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<reponame>", "<file_sep>"),
    # SantaCoder
    ("<fim-prefix>", "<fim-suffix>", "<fim-middle>", "", ""),
    # DeepSeek-Coder: begin, hole and end are its prefix, suffix and middle markers
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "", ""),
    # CodeLlama: the markers carry their leading space
    ("▁<PRE>", "▁<SUF>", "▁<MID>", "", ""),
)


def hf_fim_tokens(tokenizer: Any) -> FimTokens | None:
    """The FIM tokens of the first family whose prefix, suffix and middle markers are all added
    tokens of ``tokenizer``; its repository and file-separator markers where it has them."""
    added_vocab = getattr(tokenizer, "get_added_vocab", None)
    if added_vocab is None:  # not a Hugging Face tokenizer (vLLM's Mistral one): no FIM names
        return None
    added = set(added_vocab())
    for prefix, suffix, middle, repo, file_sep in FAMILIES:
        if {prefix, suffix, middle} <= added:
            return FimTokens(
                prefix,
                suffix,
                middle,
                repo if repo in added else "",
                file_sep if file_sep in added else "",
            )
    return None
