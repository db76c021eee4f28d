"""Tool calls out of a streamed reply, with no markup ever reaching the content.

:class:`ToolStream` reads a model's native format (``auto``): text that might begin a call is
held back until it is known not to be one; a call's text is held until it is complete, then
parsed and emitted as tool-call deltas (id and name first, then the arguments). A call that
does not parse goes back into the content, and the log says why. :class:`ForcedCalls` reads
grammar-constrained output (``required`` or a named function), which is nothing but the call.

Feeding the whole text at once gives the same content and calls as feeding it in any pieces,
so a streamed answer and a collected one always agree.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection
from typing import Any

from llmserver.backends.base import ToolCallDelta
from llmserver.core.tools.formats import Call, MalformedCall, ToolFormat, call_of

logger = logging.getLogger("llmserver.tools")

Output = tuple[str, list[ToolCallDelta]]


def new_call_id() -> str:
    """An OpenAI-style tool call id."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _held_prefix(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that could be the start of a marker."""
    longest = max((len(m) for m in markers), default=0)
    for size in range(min(longest - 1, len(text)), 0, -1):
        if any(m.startswith(text[-size:]) for m in markers):
            return size
    return 0


class _Emitter:
    """Numbers the calls of one choice and turns them into deltas."""

    def __init__(self, names: Collection[str], parallel: bool) -> None:
        self._names = names
        self._parallel = parallel
        self.count = 0

    def check(self, calls: list[Call]) -> None:
        for name, _ in calls:
            if name not in self._names:
                raise MalformedCall(f"the model called '{name}', which is not a given tool")

    def emit(self, calls: list[Call]) -> list[ToolCallDelta]:
        out: list[ToolCallDelta] = []
        for name, args in calls:
            if self.count and not self._parallel:
                logger.info("dropping tool call to %s: parallel_tool_calls is false", name)
                continue
            index, self.count = self.count, self.count + 1
            out.append(ToolCallDelta(index, new_call_id(), name, ""))
            out.append(ToolCallDelta(index, arguments=json.dumps(args, ensure_ascii=False)))
        return out


class ToolStream:
    """One choice's text in a native tool format: content out, calls parsed."""

    def __init__(self, fmt: ToolFormat, names: Collection[str], parallel: bool = True) -> None:
        self.fmt = fmt
        self._calls = _Emitter(names, parallel)
        self._buf = ""
        #: "start" (a leading format, nothing decided), "text", "call", or "plain" (no calls)
        self._mode = "start" if fmt.leading else "text"

    @property
    def called(self) -> bool:
        """Whether any call was emitted."""
        return self._calls.count > 0

    def feed(self, text: str) -> Output:
        """Add model text; return the content that is safe to show and any finished calls."""
        self._buf += text
        content, deltas = "", []
        while True:
            step, more, progressed = self._step()
            content += step
            deltas += more
            if not progressed:
                return content, deltas

    def _step(self) -> tuple[str, list[ToolCallDelta], bool]:
        buf, fmt = self._buf, self.fmt
        if self._mode == "plain":
            self._buf = ""
            return buf, [], False
        if self._mode == "start":
            return self._start()
        if self._mode == "text":
            found = [i for i in (buf.find(m) for m in fmt.markers) if i >= 0]
            if found:
                at = min(found)
                before = buf[:at]
                self._buf, self._mode = buf[at:], "call"
                return ("" if self.called and not before.strip() else before), [], True
            keep = _held_prefix(buf, fmt.markers)
            if self.called and not buf[: len(buf) - keep].strip():
                return "", [], False  # whitespace after a call shows only if text follows
            self._buf = buf[len(buf) - keep :]
            return buf[: len(buf) - keep], [], False
        # a call: complete once its closer arrives (formats without one end with the reply)
        if fmt.closer is None or (end := buf.find(fmt.closer)) < 0:
            return "", [], False
        end += len(fmt.closer)
        block, self._buf, self._mode = buf[:end], buf[end:], "text"
        content, deltas = self._parse(block)
        return content, deltas, True

    def _start(self) -> tuple[str, list[ToolCallDelta], bool]:
        stripped = self._buf.lstrip()
        if not stripped:
            return "", [], False
        if stripped[0] in "{[" or any(stripped.startswith(m) for m in self.fmt.markers):
            self._mode = "call"
            return "", [], True
        if any(m.startswith(stripped) for m in self.fmt.markers):
            return "", [], False
        self._mode = "text" if self.fmt.markers else "plain"
        return "", [], True

    def _parse(self, block: str) -> Output:
        try:
            calls = self.fmt.parse(block)
            self._calls.check(calls)
        except MalformedCall as exc:
            logger.warning("tool call text kept as content (%s format): %s", self.fmt.name, exc)
            return block, []
        return "", self._calls.emit(calls)

    def finish(self) -> Output:
        """The reply ended: parse a call left open, release held text."""
        buf, mode = self._buf, self._mode
        self._buf, self._mode = "", "plain"
        if mode == "call" and buf.strip():
            return self._parse(buf)
        if self.called and not buf.strip():
            return "", []
        return buf, []


class ForcedCalls:
    """Grammar-constrained output: the named function's arguments, or a list of calls."""

    def __init__(self, names: Collection[str], parallel: bool, function: str | None) -> None:
        self._calls = _Emitter(names, parallel)
        self._function = function
        self._parallel = parallel
        self._buf = ""

    @property
    def called(self) -> bool:
        """Whether any call was emitted."""
        return self._calls.count > 0

    def feed(self, text: str) -> Output:
        """Hold everything: the output is the call."""
        self._buf += text
        return "", []

    def finish(self) -> Output:
        """Parse the constrained output; text that is not a call (cut short) is content."""
        buf, self._buf = self._buf, ""
        try:
            value: Any = json.loads(buf)
            if self._function is not None:
                calls: list[Call] = [(self._function, call_of({"name": "", "arguments": value})[1])]
            else:
                items = value if isinstance(value, list) else [value]
                calls = [call_of(item) for item in items]
            self._calls.check(calls)
        except (MalformedCall, json.JSONDecodeError) as exc:
            logger.warning("constrained tool call did not parse (cut short?): %s", exc)
            return buf, []
        return "", self._calls.emit(calls)
