"""What a generation streams, as the surfaces see it.

The pieces are the backends' own types (a backend streams them; the core passes them on), named
here so that a surface, which never reaches a backend, reads them from the core.
"""

from __future__ import annotations

from llmserver.backends.base import Delta, FinishReason, TokenLogprob, ToolCallDelta, TopLogprob

__all__ = ["Delta", "FinishReason", "TokenLogprob", "ToolCallDelta", "TopLogprob"]
