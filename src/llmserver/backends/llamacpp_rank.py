"""Scoring on a GGUF model loaded by :class:`~llmserver.backends.llamacpp_embed.LlamaEmbedder`:
a reranker through llama.cpp's rank pooling, or an embedding model as a bi-encoder.

A reranker reads each (query, document) pair as llama-server's ``--rerank`` builds it: the
GGUF's ``rerank`` chat template with ``{query}`` and ``{document}`` replaced (special tokens
parsed), else ``[BOS] query [EOS] [SEP] document [EOS]`` with each special token only where the
vocabulary asks for it (SEP standing in for a missing EOS). The score is the first value of the
sequence's rank-pooled output (the classification head's logit), as llama-server reports it.
llama-cpp-python's ``Llama.embed`` reads ``n_embd`` values per sequence, which rank pooling does
not give, so the batch is decoded here with the same llama.cpp calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmserver.backends.scoring import (
    Pair,
    ScoreResult,
    bi_encoder_scores,
    check_pair_lengths,
    longest_per_pair,
    unique_texts,
)
from llmserver.errors import ContextLengthError

#: llama.cpp's "no token"
TOKEN_NULL = -1


class PairTokens:
    """Builds a pair's tokens for one loaded ``Llama`` (see the module docstring)."""

    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self.llm = llm
        vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        template = llama_cpp.llama_model_chat_template(llm._model.model, b"rerank")
        self.template = template.decode("utf-8") if template else None
        self.bos = llama_cpp.llama_vocab_bos(vocab)
        eos = llama_cpp.llama_vocab_eos(vocab)
        self.eos = eos if eos != TOKEN_NULL else llama_cpp.llama_vocab_sep(vocab)
        self.sep = llama_cpp.llama_vocab_sep(vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        self.add_eos = bool(llama_cpp.llama_vocab_get_add_eos(vocab))
        self.add_sep = bool(llama_cpp.llama_vocab_get_add_sep(vocab))

    def _text(self, text: str, special: bool) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def pair(self, query: str, document: str) -> list[int]:
        """The tokens of one pair."""
        if self.template is not None:
            prompt = self.template.replace("{query}", query).replace("{document}", document)
            return self._text(prompt, special=True)
        out = [self.bos] if self.add_bos else []
        out += self._text(query, special=False)
        out += [self.eos] if self.add_eos else []
        out += [self.sep] if self.add_sep else []
        out += self._text(document, special=False)
        out += [self.eos] if self.add_eos else []
        return out

    def fitted(self, query: str, document: str, limit: int) -> list[int]:
        """The pair's tokens with the document cut (from its end) until the pair fits."""
        tokens = self.pair(query, document)
        doc = self._text(document, special=False)
        while len(tokens) > limit:
            excess = len(tokens) - limit
            if excess >= len(doc):
                raise ContextLengthError(
                    f"the query alone does not fit this model's {limit}-token input",
                    param="query",
                )
            doc = doc[: len(doc) - excess]
            text = self.llm.detokenize(doc).decode("utf-8", errors="ignore")
            tokens = self.pair(query, text)
            doc = self._text(text, special=False)
        return tokens


def rank_scores(llm: Any, pairs: Sequence[Pair], limit: int, truncate: bool) -> ScoreResult:
    """Rank-pooled scores of the pairs, decoded several sequences per batch (blocking)."""
    import llama_cpp

    build = PairTokens(llm)
    if truncate:
        inputs = [build.fitted(q, d, limit) for q, d in pairs]
    else:
        inputs = [build.pair(q, d) for q, d in pairs]
        check_pair_lengths([len(t) for t in inputs], limit)
    n_batch, n_seq_max = llm.n_batch, llm.context_params.n_seq_max
    scores: list[float] = []
    group: list[list[int]] = []

    def decode(group: list[list[int]]) -> None:
        llm._batch.reset()
        for seq, tokens in enumerate(group):
            llm._batch.add_sequence(tokens, seq, True)
        llm._ctx.kv_cache_clear()
        llm._ctx.decode(llm._batch)
        for seq in range(len(group)):
            scores.append(float(llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, seq)[0]))

    try:
        for tokens in inputs:
            if group and (sum(map(len, group)) + len(tokens) > n_batch or len(group) >= n_seq_max):
                decode(group)
                group = []
            group.append(tokens)
        if group:
            decode(group)
    finally:
        llm._batch.reset()
        llm._ctx.kv_cache_clear()
    return ScoreResult(scores, sum(len(t) for t in inputs))


def bi_encoder_llama(llm: Any, pairs: Sequence[Pair], limit: int, truncate: bool) -> ScoreResult:
    """Cosine scores from a pooling GGUF embedding model; ``truncate`` cuts long texts to the
    batch (as ``Llama.embed`` does), else a text past ``limit`` tokens is a 400."""
    texts = unique_texts(pairs)
    counts = [len(llm.tokenize(t.encode("utf-8"))) for t in texts]
    if not truncate:
        check_pair_lengths(longest_per_pair(pairs, texts, counts), limit, "text")
    rows: list[Any] = list(llm.embed(texts, normalize=True, truncate=True))
    vectors = [[float(x) for x in row] for row in rows]
    return bi_encoder_scores(pairs, texts, vectors, [min(c, limit) for c in counts])
