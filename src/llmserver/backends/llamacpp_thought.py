"""A sequence's thought, followed on the llama.cpp engine thread.

The engine reads each generated token (special tokens written out) with the same splitter the
core uses, so both agree on where the thought ends. Two things hang on that moment:

- the thinking budget: once the thought has run ``budget`` tokens, the end marker's tokens are
  fed in instead of sampled ones, and the model goes on to answer;
- the constraint: a JSON or tool grammar is applied only from the end of the thought (the
  grammar's sampler chain replaces the free one then), so the thought stays free text.
"""

from __future__ import annotations

import codecs
from collections import deque
from typing import Any

from llmserver.backends.llamacpp_sampling import free_sampler
from llmserver.backends.thought import ThoughtSpec, ThoughtSplitter


class ThoughtTracker:
    """One sequence's thought: its splitter, its budget, the end-marker tokens still to feed
    and the constrained sampler chain waiting for the answer (owned here until swapped in)."""

    __slots__ = (
        "_decoder",
        "_forced",
        "_spent",
        "after",
        "budget",
        "end_tokens",
        "splitter",
        "thought",
    )

    def __init__(self, spec: ThoughtSpec, end_tokens: list[int], after: Any = None) -> None:
        self.splitter = ThoughtSplitter(spec)
        self.budget = spec.budget
        self.end_tokens = end_tokens
        #: the sampler chain for the answer (with the grammar); None: the chain stays
        self.after = after
        #: tokens generated inside the thought
        self.thought = 0
        self._forced: deque[int] = deque()
        #: the budget was spent and the end marker scheduled (once: never again)
        self._spent = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if spec.open and self.budget is not None and self.budget <= 0:
            self._spend()

    def _spend(self) -> None:
        self._spent = True
        self._forced.extend(self.end_tokens)

    @property
    def done(self) -> bool:
        """The thought has ended (or there was none)."""
        return self.splitter.state == "answer"

    def forced(self) -> int | None:
        """The next end-marker token to feed instead of sampling (None: sample)."""
        return self._forced.popleft() if self._forced else None

    def instead_of_end(self) -> int | None:
        """The model ended its reply inside the thought: the end marker's first token to feed
        instead (the thought is closed and the model answers), once; None: let it end."""
        if self.done or self._spent or not self.end_tokens:
            return None
        self._spend()
        return self.forced()

    def observe(self, piece: bytes) -> bool:
        """Read one generated token; True when the thought ended with it. Schedules the end
        marker once the budget is spent."""
        if self.done:
            return False
        inside = self.splitter.state == "thought"
        self.splitter.feed(self._decoder.decode(piece))
        if self.done:
            self._forced.clear()
            return True
        if inside and self.splitter.state == "thought":
            self.thought += 1
            if self.budget is not None and self.thought >= self.budget and not self._spent:
                self._spend()
        return False

    def take_after(self) -> Any:
        """Hand over the answer's sampler chain (the caller owns it from now on)."""
        after, self.after = self.after, None
        return after

    def close(self) -> None:
        """Free the answer's chain if it was never swapped in."""
        free_sampler(self.take_after())
