"""A reasoning model's thought on the transformers backend: a logits processor that follows
the thought (:class:`~llmserver.backends.thought.ThoughtFollower`), feeds the end marker once
the budget is spent, and applies the JSON grammar only from the end of the thought.

A reply is never a thought alone: inside the thought the end-of-text tokens' chance goes to the
end marker's first token instead (generate() samples after the processors, so the sampled
token cannot be swapped as llama.cpp's engine does), and once that token is picked the rest
of the marker follows.

generate() calls a logits processor before each token with every token so far, so the token
it picked last is the last of ``input_ids`` (from the second call on). Torch is imported only
inside the call, as the rest of the backend does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from llmserver.backends.thought import ThoughtFollower

if TYPE_CHECKING:
    import torch

    from llmserver.backends.transformers_grammar import GrammarProcessor


class ThoughtProcessor:
    """Follows one sequence's thought (batch size 1): forced end-marker tokens while the
    budget's end is fed, the grammar (if any) once the thought has ended, else the scores as
    they are."""

    def __init__(
        self,
        follower: ThoughtFollower,
        piece: Callable[[int], bytes],
        grammar: GrammarProcessor | None = None,
        eos: Collection[int] = (),
    ) -> None:
        self.follower = follower
        self.piece = piece
        self.grammar = grammar
        self.eos = sorted(eos)
        self._started = False
        #: the end's chance went to the marker's first token at the last step
        self._moved = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> Any:
        import torch

        follower = self.follower
        if self._started and not follower.done:
            last = int(input_ids[0, -1])
            follower.observe(self.piece(last))
            if self._moved and follower.end_tokens and last == follower.end_tokens[0]:
                follower.complete_marker()
        self._started = True
        self._moved = False
        forced = follower.forced()
        if forced is not None:
            only = torch.full_like(scores, float("-inf"))
            only[..., forced] = 0.0
            return only
        if follower.done:
            # the grammar's first call reads no token: it starts at the answer
            return scores if self.grammar is None else self.grammar(input_ids, scores)
        if self.eos and follower.end_tokens and follower.instead_of_end_allowed:
            first = follower.end_tokens[0]
            ends = scores[..., self.eos]
            both = torch.cat([scores[..., first : first + 1], ends], dim=-1)
            scores = scores.clone()
            scores[..., first] = torch.logsumexp(both, dim=-1)
            scores[..., self.eos] = float("-inf")
            self._moved = True
        return scores
