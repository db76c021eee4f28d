"""One stretch of tool calls in a reply, read as it is written, its arguments sent as they come.

A region begins at a format's marker (or at a reply that opens with JSON) and ends at the
format's closer, at text that is no call, or with the reply. Inside it, calls are JSON values
(see :mod:`llmserver.core.tools.formats`); Mistral v11's ``name[ARGS]{...}`` too.

A call is *sent* once its name is known, names a given tool, and its arguments object has
begun: its first piece carries the index, a new id and the name, then every character of the
arguments object follows as the model writes it. The arguments are the model's own text of
that object (never re-serialised), so the pieces of a streamed answer join to exactly the
string a collected answer holds. Until the first call of a region is sent, anything wrong
(bad JSON, an unknown tool, no name) gives the whole region back as content. After that a
region cannot be taken back: a later call that names an unknown tool is left out, JSON that
breaks off, or a reply cut short inside a call, ends the call with its arguments as far as
they came (the log says so), and the rest of the region is dropped as markup.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from llmserver.backends.base import ToolCallDelta
from llmserver.core.tools.formats import ToolFormat
from llmserver.core.tools.jsonscan import JsonError, JsonReader, Path

logger = logging.getLogger("llmserver.tools")

_SEPARATORS = " \t\r\n;,"
_ARGS_KEYS = ("arguments", "parameters")
#: Mistral v11: ``name[ARGS]``, with an optional ``[CALL_ID]id`` between
_NAMED = re.compile(r"([A-Za-z0-9_.\-]+)\s*(?:\[CALL_ID\]\s*[A-Za-z0-9]+\s*)?\[ARGS\]")
_NAMED_PARTIAL = re.compile(r"[A-Za-z0-9_.\-\s\[\]]{0,80}")


def new_call_id() -> str:
    """An OpenAI-style tool call id."""
    return f"call_{uuid.uuid4().hex[:24]}"


class Emitter:
    """Numbers the calls of one choice (and drops all but the first without parallel calls)."""

    def __init__(self, names: Collection[str], parallel: bool) -> None:
        self.names = names
        self._parallel = parallel
        self.count = 0

    def open(self, name: str) -> int | None:
        """The index of a new call to ``name``; None when it is dropped."""
        if self.count and not self._parallel:
            logger.info("dropping tool call to %s: parallel_tool_calls is false", name)
            return None
        index, self.count = self.count, self.count + 1
        return index


class NotACall(Exception):
    """The region's text is not a call, and nothing of it has been sent."""


@dataclass
class _Call:
    path: Path
    name: str | None = None
    args_path: Path | None = None
    args_kind: str = ""
    args_start: int = 0
    #: the whole arguments text, once it is known
    args_text: str | None = None
    index: int | None = None
    sent: int = 0
    inner: bool = False
    dropped: bool = False


class Region:
    """Reads one region; :meth:`advance` returns how far it read and whether it ended."""

    def __init__(self, fmt: ToolFormat, calls: Emitter, function: str | None = None) -> None:
        self._fmt = fmt
        self._emitter = calls
        #: the region's text so far, markers included (given back as content when no call)
        self.raw = ""
        self.reason = ""
        #: a call of this region was sent (or dropped as a parallel call): it is no content
        self.committed = False
        self._function = function
        self._fixed: str | None = None  # the current value is this function's arguments
        self._reader: JsonReader | None = None
        self._calls: dict[Path, _Call] = {}
        self._found = 0  # calls in the current value
        self._values = 0
        self._segment = False  # just after a marker (where ``name[ARGS]`` may begin)
        self._skip = False
        self._out: list[ToolCallDelta] = []

    def take(self) -> list[ToolCallDelta]:
        """The pieces of calls read since the last take."""
        out, self._out = self._out, []
        for call in self._calls.values():
            self._flush(call)
        out += self._out
        self._out = []
        return out

    # -- reading ---------------------------------------------------------------------------------

    def advance(self, buf: str, final: bool) -> tuple[int, str]:
        """Read from ``buf``: how many characters were used, and ``more`` (the region goes on),
        ``end`` (it ended; the rest is text) or ``failed`` (no call: :attr:`raw` is content)."""
        i = 0
        try:
            while i < len(buf):
                if self._skip:
                    return self._skipping(buf, i, final)
                if self._reader is not None:
                    self._push(buf[i])
                    i += 1
                    continue
                step, status = self._between(buf, i, final)
                if status:
                    return step, status
                i = step
        except NotACall as exc:
            self.reason = str(exc)
            return i, "failed"
        except _Hold as hold:
            return hold.at, "more"
        if final:
            return i, self._close()
        return i, "more"

    def _push(self, ch: str) -> None:
        reader = self._reader
        assert reader is not None
        self.raw += ch
        try:
            reader.push(ch)
            if reader.done:
                self._reader = None
                self._value_done()
        except NotACall:
            self.raw = self.raw[:-1]  # the character goes back as text with the rest
            raise
        except JsonError as exc:
            self.raw = self.raw[:-1]
            if not self.committed:
                raise NotACall(str(exc)) from None
            logger.warning(
                "tool call JSON broke off after the call was sent (%s); its arguments end "
                "where they were, the rest of the call text is dropped",
                exc,
            )
            self._reader, self._skip = None, True
            self._flush_all()

    def _between(self, buf: str, i: int, final: bool) -> tuple[int, str]:
        """Between values: separators, markers, the closer, a new value or the region's end."""
        ch, rest, fmt = buf[i], buf[i:], self._fmt
        if ch in _SEPARATORS:
            self.raw += ch
            return i + 1, ""
        if fmt.closer is not None and rest.startswith(fmt.closer):
            self.raw += fmt.closer
            return i + len(fmt.closer), self._ended("an empty call")
        for marker in fmt.markers:
            if rest.startswith(marker):
                self.raw += marker
                self._segment = True
                return i + len(marker), ""
        tokens = [t for t in (fmt.closer, *fmt.markers) if t]
        if not final and any(t.startswith(rest) for t in tokens):
            raise _Hold(i)
        if ch in "{[":
            self._reader = JsonReader(self)
            self._fixed = self._function if not self._values else None
            self._values += 1
            self._found = 0
            self._segment = False
            return i, ""
        if fmt.named_args and self._segment:
            return self._named(buf, i, final)
        if self.committed and fmt.closer is not None:
            self._skip = True  # text inside a call's markup after the call: not content
            return i, ""
        return i, self._ended("text that is not a call")

    def _named(self, buf: str, i: int, final: bool) -> tuple[int, str]:
        rest = buf[i:]
        match = _NAMED.match(rest)
        if match is None:
            if not final and "[ARGS]" not in rest and _NAMED_PARTIAL.fullmatch(rest):
                raise _Hold(i)
            return i, self._ended("[TOOL_CALLS] is followed by no call")
        name = match.group(1)
        if name not in self._emitter.names:
            self._bad(None, f"the model called '{name}', which is not a given tool")
            self._skip = True
            return i, ""
        self.raw += match.group(0)
        self._segment = False
        self._reader = JsonReader(self)
        self._fixed = name
        return i + match.end(), ""

    def _skipping(self, buf: str, i: int, final: bool) -> tuple[int, str]:
        closer = self._fmt.closer
        if closer is None:
            return len(buf), "end" if final else "more"
        at = buf.find(closer, i)
        if at >= 0:
            return at + len(closer), "end"
        if final:
            return len(buf), "end"
        keep = next((n for n in range(len(closer) - 1, 0, -1) if closer.startswith(buf[-n:])), 0)
        return len(buf) - keep, "more"

    def _ended(self, reason: str) -> str:
        if self.committed:
            return "end"
        self.reason = reason
        return "failed"

    def _close(self) -> str:
        """The reply ended inside the region."""
        if self._reader is not None and self.committed:
            logger.warning("the reply ended inside a tool call: its arguments end where they were")
            self._flush_all()
        if not self.committed:
            self.reason = "the reply ended inside the call"
        return "end" if self.committed else "failed"

    # -- the JSON reader's listener ------------------------------------------------------------

    def start(self, path: Path, kind: str) -> None:
        """A JSON value begins."""
        if self._fixed is not None:
            if path == ():
                call = _Call(path, name=self._fixed)
                self._calls = {(): call}
                self._args_begin(call, path, kind)
            return
        if not path:
            self._calls = {}
        parent = self._calls.get(path[:-1]) if path else None
        if self._is_call(path, kind):
            if kind == "{":
                self._calls[path] = _Call(path)
                if parent is not None:
                    parent.inner = True
            elif path or kind != "[":
                self._bad(parent, "a call must be a JSON object")
            return
        if parent is not None and path[-1] in _ARGS_KEYS and parent.args_path is None:
            self._args_begin(parent, path, kind)

    def end(self, path: Path, value: Any) -> None:
        """A JSON value ended."""
        if self._fixed is not None:
            if path == ():
                fixed = self._calls[()]
                self._args_end(fixed, value)
                self._finish(fixed)
            return
        if path in self._calls:
            self._finish(self._calls[path])
            return
        call = self._calls.get(path[:-1]) if path else None
        if call is None:
            return
        if path[-1] == "name" and call.name is None:
            if not isinstance(value, str):
                self._bad(call, "a call's name must be a string")
            elif value not in self._emitter.names:
                self._bad(call, f"the model called '{value}', which is not a given tool")
            else:
                call.name = value
                self._header(call)
        elif path == call.args_path:
            self._args_end(call, value)

    def _is_call(self, path: Path, kind: str) -> bool:
        if not path or path == ("tool_call",):
            return True
        if kind == "{" and path[-1] == "function" and path[:-1] in self._calls:
            return True
        if len(path) == 1:
            return isinstance(path[0], int)
        return len(path) == 2 and path[0] == "tool_calls" and isinstance(path[1], int)

    def _args_begin(self, call: _Call, path: Path, kind: str) -> None:
        call.args_path, call.args_kind, call.args_start = path, kind, len(self.raw) - 1
        if kind == "{":
            self._header(call)
        elif kind not in ('"', "lit"):
            self._bad(call, "arguments are not a JSON object")

    def _args_end(self, call: _Call, value: Any) -> None:
        if call.dropped:
            return
        if call.args_kind == "{":
            call.args_text = self.raw[call.args_start :]
            self._flush(call)
        elif call.args_kind == '"':  # arguments written as a JSON string of the object
            try:
                parsed = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                self._bad(call, "arguments are not a JSON object")
                return
            call.args_text = value if value.strip() else "{}"
        elif value is None:
            call.args_text = "{}"
        else:
            self._bad(call, "arguments are not a JSON object")

    def _finish(self, call: _Call) -> None:
        """A call object is complete."""
        if call.dropped:
            return
        if call.name is None:
            if not call.inner:
                self._bad(call, "a call must name its tool")
            return
        self._found += 1
        if call.index is None and not call.dropped:
            index = self._open(call)
            if index is not None:
                text = call.args_text if call.args_text is not None else "{}"
                self._out.append(ToolCallDelta(index, arguments=text))
        call.dropped = True  # nothing more to send

    def _value_done(self) -> None:
        if not self._found and self._fixed is None:
            self._bad(None, "no call in the text")
        self._fixed = None

    # -- sending ---------------------------------------------------------------------------------

    def _open(self, call: _Call) -> int | None:
        assert call.name is not None
        self.committed = True
        index = self._emitter.open(call.name)
        if index is None:
            call.dropped = True
            return None
        call.index = index
        self._out.append(ToolCallDelta(index, new_call_id(), call.name, ""))
        return index

    def _header(self, call: _Call) -> None:
        """Send a call's first piece once its name is known and its arguments have begun."""
        if call.index is not None or call.dropped or call.name is None or call.args_kind != "{":
            return
        if self._open(call) is not None:
            call.sent = call.args_start
            self._flush(call)

    def _flush(self, call: _Call) -> None:
        if call.index is None or call.args_kind != "{":
            return
        end = len(self.raw) if call.args_text is None else call.args_start + len(call.args_text)
        if end > call.sent:
            self._out.append(ToolCallDelta(call.index, arguments=self.raw[call.sent : end]))
            call.sent = end

    def _flush_all(self) -> None:
        """Send what there is of every open call, and send no more of them."""
        for call in self._calls.values():
            self._flush(call)
            if call.args_text is None:
                call.args_text = self.raw[call.args_start : call.sent]
            call.dropped = True

    def _bad(self, call: _Call | None, reason: str) -> None:
        if not self.committed:
            raise NotACall(reason)
        logger.warning("tool call left out: %s", reason)
        if call is not None:
            call.dropped = True


class _Hold(Exception):
    """Wait for more text at this offset (it may be the start of a marker)."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at
