"""A draft model for speculative decoding: a small GGUF with the target's vocabulary that
guesses the target's next tokens greedily (:mod:`llmserver.backends.llamacpp_spec`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from llmserver.backends.base import ModelLoadError
from llmserver.backends.llamacpp_engine import common_prefix

#: a draft model's guess must have at least this probability, or guessing stops there
#: (llama-server's ``--draft-p-min``)
DRAFT_P_MIN = 0.75
#: token ids of a draft model's vocabulary compared with the target's (besides the size)
VOCAB_CHECK = 512


class DraftModel:
    """A small GGUF model that guesses the target's next tokens greedily, one KV stream per
    sequence id of the target's context."""

    def __init__(self, model: Any, ctx: Any, n_batch: int) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.model = model  # an ``_internals.LlamaModel`` (frees its weights when collected)
        self.ctx = ctx
        vocab = llama_cpp.llama_model_get_vocab(model.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.n_batch = n_batch
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        #: the tokens each stream's cells hold
        self._held: dict[int, list[int]] = {}

    def propose(self, wants: list[tuple[int, list[int], int]]) -> list[list[int]]:
        """Guesses for each ``(sequence id, its tokens so far, how many)``, in order."""
        lib = self._lib
        todo: list[tuple[int, list[int]]] = []  # (seq id, tokens to feed)
        for seq_id, tokens, _limit in wants:
            held = self._held.get(seq_id, [])
            keep = common_prefix(held, tokens)
            keep = min(keep, len(tokens) - 1)  # the last token is fed again for its logits
            lib.llama_memory_seq_rm(self.memory, seq_id, keep, -1)
            self._held[seq_id] = tokens[:keep]
            todo.append((seq_id, tokens[keep:]))
        rows = self._feed(todo)
        guesses: list[list[int]] = [[] for _ in wants]
        live = [i for i, (_, _, limit) in enumerate(wants) if limit > 0]
        while live:
            step: list[tuple[int, list[int]]] = []
            still: list[int] = []
            for i in live:
                token = self._confident(rows[i])
                if token is None:
                    continue
                guesses[i].append(token)
                if len(guesses[i]) < wants[i][2]:
                    step.append((wants[i][0], [token]))
                    still.append(i)
            if not step:
                break
            fed = self._feed(step)
            for i, row in zip(still, fed, strict=True):
                rows[i] = row
            live = still
        return guesses

    def _feed(self, todo: list[tuple[int, list[int]]]) -> list[int]:
        """Decode each stream's new tokens (in chunks of ``n_batch``); the batch row of each
        stream's last token, whose logits the next guess reads."""
        lib, batch = self._lib, self._batch
        rows = [-1] * len(todo)
        cursors = [0] * len(todo)
        while any(c < len(t) for c, (_, t) in zip(cursors, todo, strict=True)):
            n = 0
            for i, (seq_id, tokens) in enumerate(todo):
                held = self._held[seq_id]
                while cursors[i] < len(tokens) and n < self.n_batch:
                    token = tokens[cursors[i]]
                    last = cursors[i] == len(tokens) - 1
                    batch.token[n] = token
                    batch.pos[n] = len(held)
                    batch.n_seq_id[n] = 1
                    batch.seq_id[n][0] = seq_id
                    batch.logits[n] = last
                    if last:
                        rows[i] = n
                    held.append(token)
                    cursors[i] += 1
                    n += 1
            batch.n_tokens = n
            rc = int(lib.llama_decode(self.ctx, batch))
            if rc != 0:
                self.clear()
                raise RuntimeError(f"draft model: llama_decode returned {rc}")
        return rows

    def _confident(self, row: int) -> int | None:
        """The draft's most likely next token at ``row``, if it is likely enough."""
        import numpy as np

        ptr = self._lib.llama_get_logits_ith(self.ctx, row)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        best = int(np.argmax(logits))
        top = float(logits[best])
        p_best = 1.0 / float(np.sum(np.exp(logits - top)))
        return best if p_best >= DRAFT_P_MIN and math.isfinite(top) else None

    def set_threads(self, threads: int, threads_batch: int) -> None:
        """Compute threads, as the target's engine uses them."""
        self._lib.llama_set_n_threads(self.ctx, threads, threads_batch)

    def clear(self) -> None:
        """Forget every stream's cells (after a failed decode their contents are unknown)."""
        self._lib.llama_memory_clear(self.memory, True)
        self._held.clear()

    def close(self) -> None:
        """Free the context and the batch; the weights go with ``model``."""
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_free(self.ctx)
        self.model.close()


def load_draft(
    path: Path, target: Any, n_seq: int, n_ctx_seq: int, n_batch: int, threads: int
) -> DraftModel:
    """Load a draft model beside the loaded ``target`` model (a ``llama_model*``): one KV stream
    of ``n_ctx_seq`` cells per sequence id, flash attention, the target's threads. A draft
    whose vocabulary differs from the target's is refused (its guesses would be other tokens)."""
    import llama_cpp
    from llama_cpp import _internals

    try:
        model: Any = _internals.LlamaModel(
            path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=True
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"draft model load failed: {path}: {exc}") from exc
    problem = vocab_mismatch(target, model.model)
    if problem:
        model.close()
        raise ModelLoadError(f"draft model {path} cannot guess for this model: {problem}")
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = n_ctx_seq * n_seq
    cparams.n_batch = n_batch
    cparams.n_ubatch = min(512, n_batch)
    cparams.n_seq_max = n_seq
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    cparams.kv_unified = False
    cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    cparams.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model.model, cparams)
    if not ctx:
        model.close()
        raise ModelLoadError(f"could not create a llama.cpp context for the draft model {path}")
    return DraftModel(model, ctx, n_batch)


def vocab_mismatch(target: Any, draft: Any) -> str:
    """Why a draft model's vocabulary is not the target's ('' when it is): the size, the
    end-of-generation token, or the text of one of the first :data:`VOCAB_CHECK` tokens."""
    import llama_cpp

    t_vocab = llama_cpp.llama_model_get_vocab(target)
    d_vocab = llama_cpp.llama_model_get_vocab(draft)
    t_n = llama_cpp.llama_vocab_n_tokens(t_vocab)
    d_n = llama_cpp.llama_vocab_n_tokens(d_vocab)
    if t_n != d_n:
        return f"its vocabulary has {d_n} tokens, the model's {t_n}"
    if llama_cpp.llama_vocab_eos(t_vocab) != llama_cpp.llama_vocab_eos(d_vocab):
        return "its end-of-text token differs"
    for token in range(min(t_n, VOCAB_CHECK)):
        if _text(t_vocab, token) != _text(d_vocab, token):
            return f"token {token} differs"
    return ""


def _text(vocab: Any, token: int) -> bytes:
    import llama_cpp

    raw = llama_cpp.llama_vocab_get_text(vocab, token)
    return bytes(raw) if raw is not None else b""
