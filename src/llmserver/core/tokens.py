"""Token tools: what a model's own tokenizer makes of a text, and the text of its tokens."""

from __future__ import annotations

from dataclasses import dataclass

from llmserver.backends.abilities import TokenTools
from llmserver.core.manager import ModelHandle
from llmserver.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class TokenList:
    """Token ids of one text, each token's text, and the model's context length."""

    model: str
    tokens: tuple[int, ...]
    pieces: tuple[str, ...]
    max_model_len: int


def token_tools(handle: ModelHandle) -> TokenTools:
    """The loaded model's token tools; a 400 naming the model when it tokenizes elsewhere."""
    tools = handle.abilities().token_tools
    if tools is None or handle.tokenizer() is None:
        raise InvalidRequestError(
            f"model '{handle.id}' is served upstream (or by an engine without token tools), "
            "so this server cannot tokenize for it",
            param="model",
            code="tokenize_unsupported",
        )
    return tools


def tokenize(handle: ModelHandle, text: str, add_special: bool | None) -> TokenList:
    """``text`` tokenized by the model: as a generation would (``add_special`` None), or with
    special tokens added or not."""
    tools = token_tools(handle)
    tokenizer = handle.tokenizer()
    assert tokenizer is not None
    assert handle.prompt_format is not None
    if add_special is None:
        ids = tokenizer.tokenize(text)
    else:
        ids = tools.tokenize_text(text, add_special)
    pieces = tuple(tools.token_piece(t) for t in ids)
    return TokenList(handle.id, tuple(ids), pieces, handle.prompt_format.context_length)


def detokenize(handle: ModelHandle, tokens: tuple[int, ...]) -> str:
    """The text of ``tokens``; a 400 for an id outside the vocabulary."""
    tools = token_tools(handle)
    if any(t < 0 for t in tokens):
        raise InvalidRequestError("token ids must not be negative", param="tokens")
    return tools.detokenize(tokens)
