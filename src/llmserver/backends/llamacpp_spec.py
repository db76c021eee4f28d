"""Speculative decoding for the llama.cpp batch engine: where the guesses come from.

A decoding sequence's step carries its next token and up to ``max_tokens`` guessed ones; the
engine samples every position of that step with the sequence's own sampler chain, in order, and
keeps the guesses up to the first one the chain did not pick (its pick is kept instead). So each
emitted token is the one the target model's chain would have sampled without guesses, and the
chain draws exactly one random number per emitted token: greedy output is unchanged, and so is
sampled output with a seed (which makes it follow the target model's distribution, as standard
speculative sampling does for a deterministic guess). This holds while a token's logits do not
depend on how many tokens of its sequence a step carries, which llama.cpp's CPU attention only
guarantees with flash attention (see ``LlamaCppConfig.flash_attn``).

Two sources of guesses:

- :class:`NgramLookup` (prompt lookup): the tokens that followed the latest earlier occurrence of
  the sequence's last few tokens, in its own prompt and output. Free, and good where the answer
  repeats its input (extraction into JSON, summaries, code edits).
- a draft model (:mod:`llmserver.backends.llamacpp_draft`): a smaller GGUF with the same
  vocabulary, run greedily in its own context with one KV stream per sequence id; each stream is
  brought up to date with the target's tokens lazily (the common prefix stays), so the target's
  prefix cache, copies and roll-backs need no bookkeeping here.

How many tokens a sequence guesses adapts to how many it got right (:class:`DraftState`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from llmserver.backends.llamacpp_draft import DraftModel
from llmserver.config.model_configs import SpeculativeConfig

#: the longest run of recent tokens prompt lookup tries to match (longer runs win)
NGRAM_MAX = 4
#: how much the last verification weighs against earlier ones in a sequence's odds
DECAY = 0.8
#: a sequence whose guesses are too poor to make still tries one after this many steps
PROBE_EVERY = 16
#: how fast old steps stop counting in the measured step costs (per step)
COST_DECAY = 0.99
#: the chance a guess must have before the step costs are known (one sequence, a small CPU)
FIRST_THRESHOLD = 0.4


@dataclass(slots=True)
class DraftState:
    """One sequence's speculation: how often its guesses have been right, and the counts."""

    ceiling: int
    lookup: NgramLookup | None = None
    #: guesses kept and refused lately (decayed), for the estimate of the next one's odds
    hits: float = 0.0
    misses: float = 0.0
    #: steps since the last guess, while the odds were too poor to guess
    idle: int = 0
    drafted: int = 0
    accepted: int = 0

    def limit(self, threshold: float) -> int:
        """How many tokens to guess: the k-th guess is worth its batch row while the odds that
        it is kept (``p ** k``, ``p`` the estimated chance one guess is right) beat
        ``threshold`` (see :class:`StepCosts`); a sequence whose guesses are too poor tries one
        now and then, so that its estimate can recover."""
        p = (self.hits + 1.0) / (self.hits + self.misses + 2.0)
        if threshold <= 0.0:
            return self.ceiling
        if p <= threshold:
            self.idle += 1
            if self.idle < PROBE_EVERY:
                return 0
            self.idle = 0
            return 1
        return max(1, min(self.ceiling, int(math.log(threshold) / math.log(p))))

    def record(self, drafted: int, accepted: int) -> None:
        """Count a verified guess: ``accepted`` of its ``drafted`` tokens were kept."""
        self.drafted += drafted
        self.accepted += accepted
        self.hits = self.hits * DECAY + accepted
        self.misses = self.misses * DECAY + (0 if accepted == drafted else 1)


class StepCosts:
    """What a batch row costs in an engine step, measured: a least-squares line through recent
    (rows, seconds) of steps that decoded no prompt chunk, older steps counting less.

    With ``S`` sequences decoding, a step costs about ``fixed + per_row * S`` seconds for ``S``
    tokens; a guess adds ``per_row`` (and, with a draft model, the draft's time per guess) for
    the chance of a token. So a guess pays when the chance that it is kept exceeds
    ``S * cost of a guess / (fixed + per_row * S)``: about 0.4 for one sequence on a small CPU,
    higher as more sequences share the step, near 0 on a GPU, where extra rows cost almost
    nothing.
    """

    def __init__(self) -> None:
        self._n = self._x = self._y = self._xx = self._xy = 0.0
        #: seconds the draft model spent per guessed token (0: prompt lookup, about free)
        self.guess_s = 0.0

    def observe(self, rows: int, seconds: float) -> None:
        """Add a step of ``rows`` rows that took ``seconds``."""
        d = COST_DECAY
        self._n = self._n * d + 1.0
        self._x = self._x * d + rows
        self._y = self._y * d + seconds
        self._xx = self._xx * d + rows * rows
        self._xy = self._xy * d + rows * seconds

    def observe_guessing(self, tokens: int, seconds: float) -> None:
        """Add the time a draft model took to guess ``tokens`` tokens."""
        if tokens > 0:
            sample = seconds / tokens
            self.guess_s = sample if self.guess_s == 0.0 else 0.8 * self.guess_s + 0.2 * sample

    def line(self) -> tuple[float, float] | None:
        """(fixed seconds, seconds per row) of a step; None until the rows have varied."""
        if self._n < 2.0:
            return None
        mean_x, mean_y = self._x / self._n, self._y / self._n
        var = self._xx / self._n - mean_x * mean_x
        if var < 0.05:
            return None
        slope = (self._xy / self._n - mean_x * mean_y) / var
        fixed = mean_y - slope * mean_x
        return max(fixed, 0.0), max(slope, 0.0)

    def threshold(self, sequences: int) -> float:
        """The chance a guess must have of being kept to pay for its row (see the class)."""
        line = self.line()
        if line is None:
            return FIRST_THRESHOLD
        fixed, per_row = line
        step = fixed + per_row * sequences
        if step <= 0.0:
            return 0.0
        return min(1.0, sequences * (per_row + self.guess_s) / step)


class NgramLookup:
    """Prompt lookup over one sequence's tokens (its prompt, then its output as it grows).

    For each n-gram of ``min_match`` to :data:`NGRAM_MAX` tokens the index keeps where the token
    after its latest occurrence is; an n-gram is indexed once a token follows it, so the
    sequence's own tail never matches itself.
    """

    def __init__(self, min_match: int) -> None:
        self.min_match = min_match
        self.max_match = max(min_match, NGRAM_MAX)
        self.tokens: list[int] = []
        self._next: dict[tuple[int, ...], int] = {}

    def sync(self, prompt: list[int], output: list[int]) -> None:
        """Index the tokens of ``prompt + output`` not seen yet."""
        seen = len(self.tokens)
        if seen < len(prompt):
            self._extend(prompt[seen:])
            seen = len(prompt)
        self._extend(output[seen - len(prompt) :])

    def _extend(self, tokens: list[int]) -> None:
        own, index = self.tokens, self._next
        for token in tokens:
            end = len(own)  # the position ``token`` takes: it follows the n-grams ending here
            for n in range(self.min_match, min(self.max_match, end) + 1):
                index[tuple(own[end - n : end])] = end
            own.append(token)

    def guess(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed the longest recurring tail; [] when none."""
        own = self.tokens
        for n in range(min(self.max_match, len(own)), self.min_match - 1, -1):
            start = self._next.get(tuple(own[-n:]))
            if start is not None:
                return own[start : start + limit]
        return []


class Speculator:
    """Makes the guesses for one engine's sequences (prompt lookup or a draft model)."""

    def __init__(self, config: SpeculativeConfig, draft: DraftModel | None) -> None:
        self.config = config
        self.draft = draft
        self.costs = StepCosts()

    def start(self) -> DraftState:
        """The speculation state of a new sequence."""
        cfg = self.config
        lookup = NgramLookup(cfg.min_match) if self.draft is None else None
        return DraftState(ceiling=cfg.max_tokens, lookup=lookup)

    def propose(
        self, wants: list[tuple[int, list[int], list[int], DraftState, int]], sequences: int
    ) -> list[list[int]]:
        """Guesses for each ``(sequence id, prompt, output, state, most tokens)``, while
        ``sequences`` sequences decode in the step."""
        threshold = self.costs.threshold(sequences)
        limits = [min(room, state.limit(threshold)) for _, _, _, state, room in wants]
        if self.draft is None:
            out = []
            for (_seq_id, prompt, output, state, _room), limit in zip(wants, limits, strict=True):
                assert state.lookup is not None
                state.lookup.sync(prompt, output)
                out.append(state.lookup.guess(limit) if limit > 0 else [])
            return out
        asks = [
            (seq_id, prompt + output, limit)
            for (seq_id, prompt, output, _state, _room), limit in zip(wants, limits, strict=True)
            if limit > 0
        ]
        if not asks:
            return [[] for _ in wants]
        started = time.perf_counter()
        made = iter(self.draft.propose(asks))
        guesses = [next(made) if limit > 0 else [] for limit in limits]
        # per token the draft did guess (it stops early where it is unsure), not per token asked
        self.costs.observe_guessing(sum(map(len, guesses)), time.perf_counter() - started)
        return guesses

    def close(self) -> None:
        """Free the draft model, if any."""
        if self.draft is not None:
            self.draft.close()
            self.draft = None
