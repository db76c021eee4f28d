"""Copies of the default GGUF model with edited metadata, written with the ``gguf`` package:
renamed vocabulary entries (to give the model another family's special tokens) and extra
integer keys (the token ids llama.cpp's converter writes). The weights are copied as they are."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import gguf
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

from llmserver.config.settings import default_model_path


def edited_copy(
    out: Path, tokens: Mapping[int, str] | None = None, ints: Mapping[str, int] | None = None
) -> Path:
    """Write to ``out`` the default model with the vocabulary entries ``tokens`` renamed (id to
    new text) and the unsigned integer keys ``ints`` set."""
    source = default_model_path()
    assert source is not None, "the default model's package is not installed"
    reader = gguf.GGUFReader(source)
    edits: dict[str, MetadataDetails] = {}
    if tokens:
        vocab = list(reader.fields["tokenizer.ggml.tokens"].contents())
        for index, text in tokens.items():
            vocab[index] = text
        edits["tokenizer.ggml.tokens"] = MetadataDetails(
            gguf.GGUFValueType.ARRAY, vocab, sub_type=gguf.GGUFValueType.STRING
        )
    for key, value in (ints or {}).items():
        edits[key] = MetadataDetails(gguf.GGUFValueType.UINT32, value)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch=arch, endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, edits, [])
    return out
