"""Tool calls out of a streamed reply, with no markup ever reaching the content.

:class:`ToolStream` reads a model's native format (``auto``): text that might begin a call is
held back until it is known not to be one; a call is sent as soon as its name is known, and
its arguments follow piece by piece as the model writes them (see
:mod:`llmserver.core.tools.region` for what happens to text that turns out not to be a call).
:class:`ForcedCalls` reads grammar-constrained output (``required`` or a named function),
which is nothing but the calls.

Feeding the whole text at once gives the same content and calls as feeding it in any pieces
(only the number of argument pieces differs), so a streamed answer and a collected one agree.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from llmserver.backends.base import ToolCallDelta
from llmserver.core.tools.formats import FORCED, ToolFormat
from llmserver.core.tools.region import Emitter, Region, new_call_id

__all__ = ["ForcedCalls", "Output", "ToolStream", "new_call_id"]

logger = logging.getLogger("llmserver.tools")

Output = tuple[str, list[ToolCallDelta]]


def _held_prefix(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that could be the start of a marker."""
    longest = max((len(m) for m in markers), default=0)
    for size in range(min(longest - 1, len(text)), 0, -1):
        if any(m.startswith(text[-size:]) for m in markers):
            return size
    return 0


class ToolStream:
    """One choice's text in a native tool format: content out, calls parsed as they come."""

    def __init__(
        self,
        fmt: ToolFormat,
        names: Collection[str],
        parallel: bool = True,
        function: str | None = None,
    ) -> None:
        self.fmt = fmt
        self._calls = Emitter(names, parallel)
        self._function = function
        self._buf = ""
        self._region: Region | None = None
        #: "start" (a leading format, nothing decided), "text", "region", or "plain" (no calls)
        self._mode = "start" if fmt.leading else "text"

    @property
    def called(self) -> bool:
        """Whether any call was sent."""
        return self._calls.count > 0

    def feed(self, text: str) -> Output:
        """Add model text; return the content that is safe to show and the call pieces."""
        self._buf += text
        return self._run(final=False)

    def finish(self) -> Output:
        """The reply ended: end a call left open, release held text."""
        content, deltas = self._run(final=True)
        rest, self._buf, self._mode = self._buf, "", "plain"
        if not (self.called and not rest.strip()):
            content += rest
        return content, deltas

    def _run(self, final: bool) -> Output:
        content, deltas = "", []
        while True:
            step, more, progressed = self._step(final)
            content += step
            deltas += more
            if not progressed:
                return content, deltas

    def _step(self, final: bool) -> tuple[str, list[ToolCallDelta], bool]:
        buf, fmt = self._buf, self.fmt
        if self._mode == "plain":
            self._buf = ""
            return buf, [], False
        if self._mode == "start":
            return self._start(final)
        if self._mode == "region":
            return self._in_region(final)
        found = [i for i in (buf.find(m) for m in fmt.markers) if i >= 0]
        if found:
            at = min(found)
            before = buf[:at]
            self._buf, self._mode = buf[at:], "region"
            self._region = Region(fmt, self._calls)
            return ("" if self.called and not before.strip() else before), [], True
        keep = 0 if final else _held_prefix(buf, fmt.markers)
        if self.called and not buf[: len(buf) - keep].strip():
            return "", [], False  # whitespace after a call shows only if text follows
        self._buf = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], [], False

    def _start(self, final: bool) -> tuple[str, list[ToolCallDelta], bool]:
        stripped = self._buf.lstrip()
        if not stripped:
            return "", [], False
        if stripped[0] in "{[" or any(stripped.startswith(m) for m in self.fmt.markers):
            self._mode = "region"
            self._region = Region(self.fmt, self._calls, self._function)
            return "", [], True
        if not final and any(m.startswith(stripped) for m in self.fmt.markers):
            return "", [], False
        self._mode = "text" if self.fmt.markers else "plain"
        return "", [], True

    def _in_region(self, final: bool) -> tuple[str, list[ToolCallDelta], bool]:
        region = self._region
        assert region is not None
        used, status = region.advance(self._buf, final)
        self._buf = self._buf[used:]
        deltas = region.take()
        if status == "more":
            return "", deltas, False
        self._region = None
        self._mode = "text" if self.fmt.markers else "plain"
        if status == "failed":
            logger.warning(
                "tool call text kept as content (%s format): %s", self.fmt.name, region.reason
            )
            return region.raw, deltas, True
        return "", deltas, True


class ForcedCalls(ToolStream):
    """Grammar-constrained output: the named function's arguments, or a list of calls.

    Output that is no call (a backend that ignored the grammar) is content; output cut short
    ends the call where it was (``finish_reason`` then says ``length``).
    """

    def __init__(self, names: Collection[str], parallel: bool, function: str | None) -> None:
        super().__init__(FORCED, names, parallel, function)
