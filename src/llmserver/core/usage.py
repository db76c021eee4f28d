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
    response_cache: Literal["hit", "miss"] | None = None

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Timing:
    """When a generation started and how long it took to its first token."""

    started: float = field(default_factory=time.perf_counter)
    ttft_s: float | None = None
