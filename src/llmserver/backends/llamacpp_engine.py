"""Continuous batching: one llama.cpp context, several sequences, one engine thread.

Every step the engine thread builds one ``llama_batch`` holding the next token of each decoding
sequence plus chunks of the prompts of joining sequences (at most ``n_batch`` tokens), runs one
``llama_decode`` and samples each sequence with its own sampler chain. Sequences join and leave
between steps. Each sequence has its own KV stream (``kv_unified = false``) of ``n_ctx_seq``
cells, so attention never looks at another sequence's cells and one long conversation cannot
crowd the others out.

Prefix cache: a finished sequence's cells stay, with the token ids they hold, and a new prompt
takes the free id holding its longest prefix, so only the rest is decoded. When a running
sequence holds a longer prefix of the prompt than any free id (requests with one instruction
arriving together), its stream is copied into a free id (``llama_memory_seq_cp``: llama.cpp
copies whole streams, tens of MB, far cheaper than decoding hundreds of tokens); a prompt whose
prefix a running sequence is still decoding waits for it rather than decoding it too.

Results cross to asyncio once per step per event loop (``call_soon_threadsafe``), not per token.

A step that decodes a long prompt chunk takes seconds on a small CPU, so while one runs
llama.cpp's abort callback watches the sequences whose prompts are in it: a cancelled one (its
client gave up) or an unloading engine stops the decode between graph nodes, the step is rolled
back, and the next step goes on without it. The callback is a Python function called once per
graph node, so it is installed for those steps only, never for token-by-token decoding.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmserver.backends.base import (
    Delta,
    FinishReason,
    SamplingParams,
    StopMatcher,
    engine_failure,
)
from llmserver.backends.cpu_threads import ThreadGovernor
from llmserver.backends.llamacpp_logprobs import token_logprob
from llmserver.backends.llamacpp_sampling import free_sampler
from llmserver.backends.llamacpp_thought import ThoughtTracker
from llmserver.errors import EngineError

if TYPE_CHECKING:
    from llmserver.backends.llamacpp_spec import DraftState, Speculator

logger = logging.getLogger("llmserver.backends.llamacpp")

#: prompt tokens decoded even when the cache holds more: one at least, for the step's logits;
#: two, because a one-token batch goes through llama.cpp's matrix-vector kernels, which round
#: differently from the batched ones (next-token logits moved by ~0.5 on SmolLM2), while with
#: two or more the logits are bit-identical to a fresh decode's (CPU, no flash attention)
MIN_DECODED = 2

#: a running sequence's cells are copied for a prompt when they hold at least this many more of
#: its tokens than the best free id does (a copy costs about as much as decoding a few tokens)
COPY_MIN = 32

#: a prompt chunk this long makes its step abortable (see the module docstring)
ABORTABLE_CHUNK = 64

#: llama_decode's return value when the abort callback stopped it
DECODE_ABORTED = 2

#: a test hook: called with (request id, generated-token index, next-token logits as numpy)
LogitsHook = Callable[[str, int, Any], None]


@dataclass(eq=False)
class Sequence:
    """One generation inside the engine. Created on the event loop, driven by the engine."""

    prompt: list[int]
    params: SamplingParams
    sampler: Any
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Delta | Exception] = field(default_factory=asyncio.Queue)
    released: asyncio.Future[None] | None = None
    on_logits: LogitsHook | None = None
    name: str = ""
    cancelled: bool = False
    #: the reasoning model's thought, followed here (budget, constraint after it)
    thought: ThoughtTracker | None = None
    # engine-thread state
    #: speculative decoding's guesses and counts (None: the model does not speculate)
    draft: DraftState | None = None
    seq_id: int = -1
    cursor: int = 0  # prompt tokens already decoded (or found in the cache)
    cached: int = 0  # prompt tokens taken from the prefix cache
    generated: int = 0
    next_token: int = -1
    output: list[int] = field(default_factory=list)  # sampled tokens
    done: bool = False
    stops: StopMatcher = field(init=False)
    decoder: codecs.IncrementalDecoder = field(init=False)

    def __post_init__(self) -> None:
        self.stops = StopMatcher(self.params.stop)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if self.released is None:
            self.released = self.loop.create_future()

    @property
    def n_past(self) -> int:
        """Tokens of this sequence in the KV cache."""
        return self.cursor + max(self.generated - 1, 0)

    def held(self) -> list[int]:
        """The token ids whose KV cells this sequence holds (the last sampled one is not fed)."""
        return self.prompt[: self.cursor] + self.output[: max(self.generated - 1, 0)]


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    # compare in blocks first: prompts share long prefixes, and list slices compare in C
    step = 256
    while i + step <= n and a[i : i + step] == b[i : i + step]:
        i += step
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(slots=True)
class CacheStats:
    """Prompt tokens taken from the prefix cache and decoded, since the engine started."""

    cached_tokens: int = 0
    evaluated_tokens: int = 0
    #: reuses refused by llama.cpp or unsafe (sliding window): the whole prompt was decoded
    fallbacks: int = 0
    #: prefixes copied from a running sequence's stream
    copies: int = 0


def _deliver(items: list[tuple[Sequence, Delta | Exception | None]]) -> None:
    """On the event loop: hand a step's results to their consumers (None: KV freed)."""
    for seq, item in items:
        if item is None:
            if seq.released is not None and not seq.released.done():
                seq.released.set_result(None)
        else:
            seq.queue.put_nowait(item)


class BatchEngine:
    """Runs many sequences through one llama.cpp context on a single thread."""

    def __init__(
        self,
        model: Any,
        ctx: Any,
        n_seq: int,
        n_batch: int,
        n_ctx_seq: int,
        prefix_cache: bool = True,
        max_idle: int | None = None,
        threads: ThreadGovernor | None = None,
        speculator: Speculator | None = None,
    ) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.model = model
        self.ctx = ctx
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.n_seq = n_seq
        self.n_batch = n_batch
        self.n_ctx_seq = n_ctx_seq
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._piece_buf = ctypes.create_string_buffer(256)
        self._free_ids = list(range(n_seq))
        #: prefix cache: whether finished sequences keep their cells, and for how many idle ids
        self.prefix_cache = prefix_cache
        self.max_idle = n_seq if max_idle is None else max_idle
        #: token ids held in the KV cells of each free sequence id, and when it was last used
        self._held: dict[int, list[int]] = {}
        self._last_used: dict[int, int] = {}
        self._clock = 0
        self._n_swa = int(llama_cpp.llama_model_n_swa(model))
        self._warned_fallback = False
        self.stats = CacheStats()
        #: guesses for speculative decoding (None: one token per sequence and step); the engine
        #: frees it when it closes
        self.speculator = speculator
        self._active: list[Sequence] = []
        self._waiting: deque[Sequence] = deque()
        self._incoming: list[Sequence] = []
        self._outbox: list[tuple[Sequence, Delta | Exception | None]] = []
        self._cond = threading.Condition()
        self._closing = False
        #: sequences whose prompt chunks the running step decodes (read by the abort callback)
        self._watched: list[Sequence] = []
        self._abort_callback = llama_cpp.ggml_abort_callback(self._should_abort)  # kept alive
        self._no_callback = llama_cpp.ggml_abort_callback()  # a NULL function pointer
        #: steps rolled back because a sequence in them was cancelled, since the engine started
        self.aborted_steps = 0
        #: adapts the compute thread count to the machine's load (``threads: auto``)
        self.threads = threads
        self._thread = threading.Thread(target=self._run, name="llamacpp-engine", daemon=True)
        self._thread.start()

    # ---- called from the event loop ----

    def submit(self, seq: Sequence) -> None:
        """Queue a sequence; it joins the running batch at the next step."""
        with self._cond:
            if self._closing:
                raise EngineError("model is not loaded")
            self._incoming.append(seq)
            self._cond.notify()

    def cancel(self, seq: Sequence) -> None:
        """Ask the engine to drop a sequence at the next step and free its cache."""
        seq.cancelled = True
        with self._cond:
            self._cond.notify()

    @property
    def free_slots(self) -> int:
        """Sequence ids not held by any sequence."""
        return len(self._free_ids)

    @property
    def in_abortable_step(self) -> bool:
        """Whether the running step is decoding a long prompt chunk (abortable). For tests."""
        return bool(self._watched)

    def seq_pos_max(self, seq_id: int) -> int:
        """Largest KV position held for a sequence id (-1: none). For tests, when idle."""
        return int(self._lib.llama_memory_seq_pos_max(self.memory, seq_id))

    def cached(self, seq_id: int) -> list[int]:
        """The token ids the prefix cache holds for a free sequence id. For tests, when idle."""
        return list(self._held.get(seq_id, []))

    def close(self) -> None:
        """Stop the thread (blocking), fail what is left, free the batch."""
        with self._cond:
            self._closing = True  # also stops a running prompt step (see _should_abort)
            self._cond.notify()
        self._thread.join()
        gone = EngineError("model was unloaded")
        for seq in [*self._active, *self._waiting, *self._incoming]:
            self._finish(seq, gone)
        self._flush()
        self._lib.llama_batch_free(self._batch)
        if self.speculator is not None:
            self.speculator.close()

    # ---- engine thread ----

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._incoming or self._active or self._waiting or self._closing):
                    self._cond.wait()
                if self._closing:
                    return
                self._waiting.extend(self._incoming)
                self._incoming.clear()
            try:
                self._admit()
                if self._active:
                    if self.threads is not None:
                        self.threads.tick()
                    self._step()
            except Exception as exc:  # a bug must not hang every consumer
                logger.exception("llama.cpp engine step failed")
                for seq in list(self._active):
                    self._finish(seq, engine_failure("llama.cpp", exc))
            self._flush()

    def _admit(self) -> None:
        """Drop cancelled sequences, then give free sequence ids to waiting ones."""
        for seq in [s for s in self._active if s.cancelled]:
            self._finish(seq, None)
        for seq in [s for s in self._waiting if s.cancelled]:
            self._waiting.remove(seq)
            self._finish(seq, None)
        deferred: list[Sequence] = []
        while self._waiting and self._free_ids:
            seq = self._waiting.popleft()
            seq_id, prefix = self._pick_id(seq.prompt)
            donor = self._donor(seq.prompt) if self.prefix_cache else None
            if donor is not None and donor[1] < prefix + COPY_MIN:
                donor = None
            if self._prefix_in_progress(seq.prompt, max(prefix, donor[1] if donor else 0)):
                deferred.append(seq)
                continue
            if donor is not None:
                seq_id = self._copy(donor[0], donor[2])
                prefix = donor[1]
            seq.seq_id = seq_id
            self._free_ids.remove(seq_id)
            self._reuse(seq, prefix)
            self.stats.cached_tokens += seq.cached
            self.stats.evaluated_tokens += len(seq.prompt) - seq.cached
            self._active.append(seq)
        self._waiting.extendleft(reversed(deferred))
        self._active.sort(key=lambda s: s.seq_id)

    def _donor(self, prompt: list[int]) -> tuple[int, int, list[int]] | None:
        """The running sequence whose cells hold the longest prefix of a prompt:
        (its id, the prefix length, the tokens it holds); None when none shares one."""
        best: tuple[int, int, list[int]] | None = None
        for other in self._active:
            held = other.held()
            shared = common_prefix(held, prompt)
            if shared and (best is None or shared > best[1]):
                best = (other.seq_id, shared, held)
        return best

    def _copy(self, source: int, held: list[int]) -> int:
        """Copy a running sequence's stream into the free id whose own cache is worth least."""
        target = min(self._free_ids, key=lambda i: (len(self._held.get(i, ())), i))
        self._lib.llama_memory_seq_cp(self.memory, source, target, -1, -1)
        self._held[target] = list(held)
        self.stats.copies += 1
        return target

    def _prefix_in_progress(self, prompt: list[int], available: int) -> bool:
        """Whether a running sequence is decoding a prefix of this prompt at least COPY_MIN
        tokens longer than what is available now: then the prompt waits to copy it."""
        if not self.prefix_cache:
            return False
        for other in self._active:
            if other.generated or other.cursor >= len(other.prompt):
                continue
            shared = common_prefix(other.prompt, prompt)
            if shared >= available + COPY_MIN and other.cursor < shared:
                return True
        return False

    def _pick_id(self, prompt: list[int]) -> tuple[int, int]:
        """A free id for a prompt, and the prefix of the prompt its cells already hold.

        The longest common prefix wins; on a tie the id that loses the fewest cached tokens,
        then the lowest id: llama.cpp splits a multi-stream batch into one ubatch per run of
        consecutive sequence ids, so gaps cost whole extra passes over the weights.
        """
        best: tuple[int, int, int] | None = None  # (-prefix, loss, id)
        for seq_id in self._free_ids:
            held = self._held.get(seq_id, [])
            prefix = common_prefix(held, prompt) if held else 0
            key = (-prefix, len(held) - prefix, seq_id)
            if best is None or key < best:
                best = key
        assert best is not None
        return best[2], -best[0]

    def _reuse(self, seq: Sequence, prefix: int) -> None:
        """Keep the first ``prefix`` cells of the sequence's id, drop the rest (or all)."""
        held = self._held.pop(seq.seq_id, [])
        keep = max(min(prefix, len(seq.prompt) - MIN_DECODED), 0)
        if not held:
            return
        if keep > 0 and self._can_keep(seq.seq_id, keep):
            seq.cursor = seq.cached = keep
            if keep == len(held):
                return
            if self._lib.llama_memory_seq_rm(self.memory, seq.seq_id, keep, -1):
                return
            seq.cursor = seq.cached = 0
            reason = "llama.cpp refused to remove part of a sequence's cache"
        elif keep > 0:
            reason = "the cache no longer holds the cells the prefix needs (sliding window)"
        else:
            reason = ""
        if reason:
            self.stats.fallbacks += 1
            level = logging.DEBUG if self._warned_fallback else logging.WARNING
            self._warned_fallback = True
            logger.log(level, "prefix cache: %s; decoding the whole prompt", reason)
        self._lib.llama_memory_seq_rm(self.memory, seq.seq_id, -1, -1)

    def _can_keep(self, seq_id: int, keep: int) -> bool:
        """Whether the cells needed to go on after ``keep`` tokens are still in the cache.

        A sliding-window cache drops cells older than the window, so decoding at position
        ``keep`` needs the positions from ``keep - n_swa`` on (all of them without a window).
        """
        pos_min = int(self._lib.llama_memory_seq_pos_min(self.memory, seq_id))
        if pos_min < 0:
            return False
        return pos_min <= (max(0, keep - self._n_swa) if self._n_swa > 0 else 0)

    def _step(self) -> None:
        """One decode over every active sequence, then sample each that produced logits."""
        batch = self._batch
        n = 0
        #: (sequence, batch row of its first logits, the guesses verified after that row)
        outputs: list[tuple[Sequence, int, list[int]]] = []

        def add(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq_id
            batch.logits[n] = logits
            n += 1

        # every decoding sequence advances by one token (and its guesses); prompt chunks share
        # what is left of n_batch. Tokens go in sequence-id order (see _admit).
        room = self.n_batch - sum(1 for seq in self._active if seq.generated)
        guesses = self._guesses(room)
        room -= sum(len(g) for g in guesses.values())
        spare = room  # still so after the loop: no prompt chunk in this step
        starts = [(seq, seq.cursor) for seq in self._active]  # to roll an aborted step back
        watched: list[Sequence] = []
        for seq in self._active:
            if seq.generated:
                guess = guesses.get(seq, [])
                outputs.append((seq, n, guess))
                add(seq.next_token, seq.n_past, seq.seq_id, True)
                for i, token in enumerate(guess):
                    add(token, seq.n_past + 1 + i, seq.seq_id, True)
                continue
            chunk = seq.prompt[seq.cursor : seq.cursor + max(room, 0)]
            room -= len(chunk)
            last = seq.cursor + len(chunk) == len(seq.prompt)
            for i, token in enumerate(chunk):
                add(token, seq.cursor + i, seq.seq_id, last and i == len(chunk) - 1)
            seq.cursor += len(chunk)
            if last and chunk:
                outputs.append((seq, n - 1, []))
            if len(chunk) >= ABORTABLE_CHUNK:
                watched.append(seq)
        batch.n_tokens = n
        started = time.perf_counter()
        rc = self._decode(watched)
        if self.speculator is not None and rc == 0 and room == spare:
            # a step of decoding rows only (no prompt chunk): what a row costs
            self.speculator.costs.observe(n, time.perf_counter() - started)
        if rc == DECODE_ABORTED:
            self._roll_back(starts)
            return
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        for seq, index, guess in outputs:
            self._verify(seq, index, guess)

    def _guesses(self, room: int) -> dict[Sequence, list[int]]:
        """Speculative decoding's guessed tokens for the decoding sequences, within ``room``
        batch rows, the request's ``max_tokens`` and the sequence's context."""
        if self.speculator is None:
            return {}
        wants = []
        asking: list[Sequence] = []
        for seq in self._active:
            if not seq.generated or seq.draft is None or room <= 0:
                continue
            most = min(
                room,
                seq.params.max_tokens - seq.generated - 1,
                self.n_ctx_seq - seq.n_past - 2,
            )
            if most <= 0:
                continue
            wants.append((seq.seq_id, seq.prompt, seq.output, seq.draft, most))
            asking.append(seq)
            room -= most
        if not wants:
            return {}
        decoding = sum(1 for seq in self._active if seq.generated)
        made = self.speculator.propose(wants, decoding)
        return {seq: guess for seq, guess in zip(asking, made, strict=True) if guess}

    def _verify(self, seq: Sequence, index: int, guess: list[int]) -> None:
        """Sample a sequence's positions of the step in order, while the guesses hold: each
        sampled token is emitted, a guess the sampler did not pick ends the run. The cells of
        guesses not kept are removed."""
        start = seq.n_past
        kept = 0
        for i in range(len(guess) + 1):
            token = self._sample(seq, index + i)
            if seq.done or i == len(guess) or token != guess[i]:
                break
            kept += 1
        if seq.draft is not None and guess:
            seq.draft.record(len(guess), kept)
            # the cells from the first guess not kept on (also when the sequence has ended:
            # the prefix cache records only the tokens it emitted)
            self._lib.llama_memory_seq_rm(self.memory, seq.seq_id, start + 1 + kept, -1)

    def _sample(self, seq: Sequence, index: int) -> int:
        """Sample (or force) the sequence's token at batch row ``index`` and emit it."""
        lib = self._lib
        if seq.on_logits is not None:
            seq.on_logits(seq.name, seq.generated, self._logits(index))
        forced = seq.thought.forced() if seq.thought is not None else None
        if forced is not None:  # the thought's budget is spent: its end marker goes in
            token = forced
            lib.llama_sampler_accept(seq.sampler, token)
        else:
            token = lib.llama_sampler_sample(seq.sampler, self.ctx, index)
            if seq.thought is not None and self._ends_reply(seq, token):
                # a reply is never a thought alone: the thought is closed instead
                token = seq.thought.instead_of_end() or token
        self._accept(seq, token)
        if seq.params.logprobs is not None:
            self._add_logprob(seq, index, token)
        return token

    def _decode(self, watched: list[Sequence]) -> int:
        """Run the step's ``llama_decode``, abortable while it holds long prompt chunks."""
        lib = self._lib
        if not watched:
            return int(lib.llama_decode(self.ctx, self._batch))
        self._watched = watched
        lib.llama_set_abort_callback(self.ctx, self._abort_callback, None)
        try:
            return int(lib.llama_decode(self.ctx, self._batch))
        finally:
            lib.llama_set_abort_callback(self.ctx, self._no_callback, None)
            self._watched = []

    def _should_abort(self, _data: Any) -> bool:
        """The abort callback (on the engine thread, inside llama_decode)."""
        return self._closing or any(seq.cancelled for seq in self._watched)

    def _roll_back(self, starts: list[tuple[Sequence, int]]) -> None:
        """Undo an aborted step: llama.cpp keeps the ubatches it finished, so each sequence's
        cells past where the step began are removed and its cursor put back; the next step
        drops the cancelled sequences and decodes the others' tokens again."""
        self.aborted_steps += 1
        for seq, cursor in starts:
            seq.cursor = cursor
            self._lib.llama_memory_seq_rm(self.memory, seq.seq_id, seq.n_past, -1)

    def _add_logprob(self, seq: Sequence, index: int, token: int) -> None:
        """Put the sampled token's log probability on the delta ``_accept`` just queued."""
        if self._lib.llama_vocab_is_eog(self.vocab, token) and not seq.params.ignore_eos:
            return  # the end of the reply is no token of it (OpenAI lists none)
        special = seq.params.special_text
        top = seq.params.logprobs or 0
        logprob = token_logprob(self._logits(index), token, top, lambda t: self._piece(t, special))
        for item_seq, item in reversed(self._outbox):
            if item_seq is seq and isinstance(item, Delta):
                item.logprobs = (*item.logprobs, logprob)
                return

    def _logits(self, index: int) -> Any:
        import numpy as np

        ptr = self._lib.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def _accept(self, seq: Sequence, token: int) -> None:
        """Turn a sampled token into a delta; finish on EOS, a stop string or a limit."""
        params = seq.params
        seq.generated += 1
        seq.output.append(token)
        eog = self._lib.llama_vocab_is_eog(self.vocab, token)
        if eog and not params.ignore_eos:
            self._end(seq, "", 0, "stop")
            return
        piece = b"" if eog else self._piece(token, params.special_text)
        if seq.thought is not None and not seq.thought.done:
            piece = self._follow(seq, token, piece)
        text, stopped = seq.stops.feed(seq.decoder.decode(piece))
        if stopped:
            self._outbox.append((seq, self._last_delta(seq, text, 1, "stop")))
            self._finish(seq, None)
        elif seq.generated >= params.max_tokens or seq.n_past >= self.n_ctx_seq:
            self._end(seq, text, 1, "length")
        else:
            seq.next_token = token
            self._outbox.append((seq, Delta(text, 1)))

    def _ends_reply(self, seq: Sequence, token: int) -> bool:
        eog = bool(self._lib.llama_vocab_is_eog(self.vocab, token))
        return eog and not seq.params.ignore_eos

    def _follow(self, seq: Sequence, token: int, piece: bytes) -> bytes:
        """Read a token of the thought; where it ends the thought, the answer's constrained
        sampler chain replaces the free one. The thought's tokens are written with special
        tokens as their text, so markers that are control tokens reach the core's splitter."""
        assert seq.thought is not None
        marker = piece if seq.params.special_text else self._piece(token, True)
        if seq.thought.observe(marker) and (after := seq.thought.take_after()) is not None:
            free_sampler(seq.sampler)
            seq.sampler = after
        return marker

    def _end(self, seq: Sequence, text: str, tokens: int, reason: FinishReason) -> None:
        tail, stopped = seq.stops.feed(seq.decoder.decode(b"", final=True))
        text += tail + ("" if stopped else seq.stops.flush())
        self._outbox.append((seq, self._last_delta(seq, text, tokens, reason)))
        self._finish(seq, None)

    @staticmethod
    def _last_delta(seq: Sequence, text: str, tokens: int, reason: FinishReason) -> Delta:
        """A sequence's last delta: why it ended, and its cache and speculation counts."""
        draft = seq.draft
        return Delta(
            text,
            tokens,
            reason,
            stop_sequence=seq.stops.matched,
            cached_tokens=seq.cached,
            draft_tokens=None if draft is None else draft.drafted,
            accepted_tokens=None if draft is None else draft.accepted,
        )

    def _piece(self, token: int, special: bool = False) -> bytes:
        buf = self._piece_buf
        n = self._lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def _finish(self, seq: Sequence, error: Exception | None) -> None:
        """Leave the engine: free the KV cells and the sampler, report, release the id."""
        if seq.done:
            return
        seq.done = True
        if seq in self._active:
            self._active.remove(seq)
        if seq.seq_id >= 0:
            self._release(seq, keep=error is None)
        free_sampler(seq.sampler)
        seq.sampler = None
        if seq.thought is not None:
            seq.thought.close()
        if error is not None:
            self._outbox.append((seq, error))
        self._outbox.append((seq, None))

    def _release(self, seq: Sequence, keep: bool) -> None:
        """Give the id back; its cells stay as prefix cache, or are removed."""
        seq_id = seq.seq_id
        self._free_ids.append(seq_id)
        if not (keep and self.prefix_cache and self.max_idle > 0):
            # after a failed step the cells' contents are unknown: never reuse them
            self._lib.llama_memory_seq_rm(self.memory, seq_id, -1, -1)
            return
        self._held[seq_id] = seq.held()
        self._clock += 1
        self._last_used[seq_id] = self._clock
        while len(self._held) > self.max_idle:
            oldest = min(self._held, key=self._last_used.__getitem__)
            del self._held[oldest]
            self._lib.llama_memory_seq_rm(self.memory, oldest, -1, -1)

    def _flush(self) -> None:
        """Send this step's results to each event loop in one call."""
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sequence, Any]]] = {}
        for seq, item in self._outbox:
            by_loop.setdefault(seq.loop, []).append((seq, item))
        self._outbox = []
        for loop, items in by_loop.items():
            # a closed loop has nobody listening any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, items)
