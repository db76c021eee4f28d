"""Value types every layer shares: token usage and timing of one call (a leaf module)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal


@dataclass(slots=True)
class Usage:
    """Token counts of one call; filled in as the generation runs.

    ``cached_tokens`` is the part of ``prompt_tokens`` an engine did not evaluate again (a
    reused prefix). ``response_cache`` is ``hit`` when the answer came from the response cache
    (every count is then 0: nothing ran), ``miss`` when it could have; None when not cacheable.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    #: the part of ``completion_tokens`` a reasoning model spent on its thought
    reasoning_tokens: int = 0
    #: speculative decoding: tokens guessed, and the part of them the model kept (each kept
    #: guess is a generated token that took no decode step of its own); None: the engine does
    #: not speculate
    draft_tokens: int | None = None
    accepted_tokens: int = 0
    response_cache: Literal["hit", "miss"] | None = None

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Timing:
    """When a generation started and how long it took to its first token.

    The ``perf_counter`` marks after ``started`` are set as the generation runs, so a surface
    can report the phases (Ollama's ``load_duration``, ``prompt_eval_duration``,
    ``eval_duration``); each stays None until its moment has come.
    """

    started: float = field(default_factory=time.perf_counter)
    ttft_s: float | None = None
    #: seconds spent loading an unloaded model for this call (0.0 when it was warm)
    load_s: float = 0.0
    #: the call took its slot and began to evaluate the prompt
    prompt_started: float | None = None
    #: the first generated token arrived (the prompt is evaluated by then)
    first_token: float | None = None
    #: the last delta of the last choice arrived
    finished: float | None = None
