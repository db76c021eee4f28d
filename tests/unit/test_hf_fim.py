"""A Hugging Face tokenizer's FIM tokens: found among its added special tokens by the names the
code-model families give them, and each one a single token of the prompt it makes. The
tokenizer is the bundled embedding model's, given a family's tokens as that family's own
tokenizer has them."""

from __future__ import annotations

from typing import Any

import pytest

from llmserver.backends.base import FimTokens
from llmserver.backends.transformers import hf_prompt_format
from llmserver.config.model_configs import SentenceTransformersConfig
from llmserver.config.settings import default_embedding_configs
from llmserver.core.fim import FimFormat, Infill, fim_prompt

transformers = pytest.importorskip("transformers")


def _tokenizer(*special: str) -> Any:
    (config,) = default_embedding_configs()
    assert isinstance(config, SentenceTransformersConfig)
    path = config.path
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    if special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(special)})
    return tokenizer


def test_a_tokenizer_without_fim_tokens_has_no_format() -> None:
    assert hf_prompt_format(_tokenizer(), 512).fim is None


def test_qwen_coder_tokens_with_the_repo_level_markers() -> None:
    qwen = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>", "<|file_sep|>")
    tokenizer = _tokenizer(*qwen)
    tokens = hf_prompt_format(tokenizer, 512).fim
    assert tokens == FimTokens(*qwen)
    fmt = FimFormat(tokens.prefix, tokens.suffix, tokens.middle, "psm", tokens.repo,
                    tokens.file_sep)  # fmt: skip
    ids = tokenizer(fim_prompt(fmt, Infill("x = ", "\n")), add_special_tokens=False).input_ids
    marker = tokenizer.convert_tokens_to_ids
    assert ids[0] == marker("<|fim_prefix|>")
    assert ids[-1] == marker("<|fim_middle|>")
    assert marker("<|fim_suffix|>") in ids


def test_starcoder_tokens_without_a_file_separator() -> None:
    tokenizer = _tokenizer("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<reponame>")
    assert hf_prompt_format(tokenizer, 512).fim == FimTokens(
        "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<reponame>", ""
    )


def test_deepseek_coder_begin_hole_end_are_prefix_suffix_middle() -> None:
    deepseek = ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>")
    assert hf_prompt_format(_tokenizer(*deepseek), 512).fim == FimTokens(*deepseek)


def test_a_family_with_a_marker_missing_is_not_taken() -> None:
    assert hf_prompt_format(_tokenizer("<fim_prefix>", "<fim_suffix>"), 512).fim is None
