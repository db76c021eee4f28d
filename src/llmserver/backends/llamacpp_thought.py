"""A sequence's thought, followed on the llama.cpp engine thread.

The engine reads each generated token (special tokens written out) with the same splitter the
core uses (:class:`~llmserver.backends.thought.ThoughtFollower`), so both agree on where the
thought ends. Two things hang on that moment:

- the thinking budget: once the thought has run ``budget`` tokens, the end marker's tokens are
  fed in instead of sampled ones, and the model goes on to answer;
- the constraint: a JSON or tool grammar is applied only from the end of the thought (the
  grammar's sampler chain replaces the free one then), so the thought stays free text.
"""

from __future__ import annotations

from typing import Any

from llmserver.backends.llamacpp_sampling import free_sampler
from llmserver.backends.thought import ThoughtFollower, ThoughtSpec


class ThoughtTracker(ThoughtFollower):
    """A follower that also owns the constrained sampler chain waiting for the answer until
    it is swapped in."""

    __slots__ = ("after",)

    def __init__(self, spec: ThoughtSpec, end_tokens: list[int], after: Any = None) -> None:
        super().__init__(spec, end_tokens)
        #: the sampler chain for the answer (with the grammar); None: the chain stays
        self.after = after

    def take_after(self) -> Any:
        """Hand over the answer's sampler chain (the caller owns it from now on)."""
        after, self.after = self.after, None
        return after

    def close(self) -> None:
        """Free the answer's chain if it was never swapped in."""
        free_sampler(self.take_after())
