"""JSON-schema constrained decoding for the transformers backend, by llguidance.

llguidance (a Rust grammar engine with no Python dependencies) compiles a JSON schema into a
grammar over the model's own tokens; a logits processor asks it, before each token, which tokens
may come next and masks the others, so the output always parses and matches the schema. JSON
is written as ``json.dumps`` writes it (``", "`` and ``": "``, no other whitespace): a small
model cannot then wander off into endless blank lines. Keywords llguidance does not implement
(an unknown ``format``) are ignored with a warning in the log, as llama.cpp's schema converter
ignores them; a schema it cannot compile at all is a 400 naming the field it came from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from llmserver.backends.base import JsonConstraint
from llmserver.errors import EngineError, InvalidRequestError

if TYPE_CHECKING:
    import torch
    from llguidance import LLMatcher, LLTokenizer

logger = logging.getLogger("llmserver.backends.transformers")

#: how the JSON is spelled: as ``json.dumps`` spells it, whitespace only after separators
JSON_STYLE: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": True,
}
#: ``response_format: json_object`` (no schema): any JSON object
ANY_OBJECT: dict[str, Any] = {"type": "object"}


class GrammarUnavailableError(Exception):
    """No grammar here: llguidance is missing or cannot read the tokenizer (the caller says 400)."""


class SchemaGrammars:
    """Compiles constraints against one tokenizer; the tokenizer's token table is built once."""

    def __init__(self, tokenizer: Any, eos: Iterable[int], n_vocab: int) -> None:
        try:
            import llguidance.hf
        except ImportError as exc:
            raise GrammarUnavailableError(
                "no JSON constraint without llguidance: pip install 'llmserver[transformers]'"
            ) from exc
        try:
            self.tokenizer: LLTokenizer = llguidance.hf.from_tokenizer(
                tokenizer, n_vocab=max(n_vocab, len(tokenizer)), eos_token=sorted(eos) or None
            )
        except ValueError as exc:  # a slow (Python) tokenizer: llguidance reads fast ones only
            raise GrammarUnavailableError(f"no JSON constraint for this tokenizer: {exc}") from exc

    def matcher(self, constraint: JsonConstraint) -> LLMatcher:
        """A fresh matcher for one generation; a schema that does not compile is a 400."""
        from llguidance import LLMatcher

        schema = constraint.schema if constraint.schema is not None else ANY_OBJECT
        grammar = LLMatcher.grammar_from_json_schema(schema, overrides=JSON_STYLE)  # type: ignore[arg-type]
        failed, messages = LLMatcher.validate_grammar_with_warnings(grammar, self.tokenizer)
        if failed:
            raise InvalidRequestError(
                f"unsupported JSON schema: {'; '.join(messages)}", location=constraint.location
            )
        if messages:
            logger.warning("JSON schema keywords not enforced: %s", "; ".join(messages))
        matcher = LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidRequestError(
                f"unsupported JSON schema: {matcher.get_error()}", location=constraint.location
            )
        return matcher


class GrammarProcessor:
    """A logits processor: only the tokens the matcher allows next keep their scores.

    It feeds the matcher each token generate() picked (the last of ``input_ids``, from the
    second call on), so it serves one sequence of one generation (batch size 1).
    """

    def __init__(self, matcher: LLMatcher) -> None:
        self.matcher = matcher
        self.started = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        if self.started and not self.matcher.consume_token(int(input_ids[0, -1])):
            raise EngineError(f"the grammar refused a token: {self.matcher.get_error()}")
        self.started = True
        bias = torch.frombuffer(bytearray(self.matcher.compute_logit_bias()), dtype=torch.uint8)
        allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
        width = min(allowed.shape[0], bias.shape[0])
        allowed[:width] = bias[:width] > 0
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))
