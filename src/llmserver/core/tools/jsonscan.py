"""An incremental JSON reader: one character at a time, it reports where each value starts and
ends, by its path from the top value, so a tool call can be streamed while it is written.

It accepts exactly what ``json.loads`` accepts (strict: no control characters in strings) and
raises :class:`JsonError` at the first character that cannot continue a valid JSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

#: a value's place: the keys and indices leading to it from the top value
Path = tuple[str | int, ...]

_WS = " \t\r\n"
_NUMBER = "0123456789+-.eE"
_WORDS = ("true", "false", "null")


class JsonError(ValueError):
    """The text cannot be (the start of) a JSON value."""


class Listener(Protocol):
    """Told about values as the reader meets them."""

    def start(self, path: Path, kind: str) -> None:
        """A value begins (``kind``: ``{``, ``[``, ``"`` or ``lit``) at the current character."""

    def end(self, path: Path, value: Any) -> None:
        """A value ended at the current character (containers end with ``value`` None).

        A number or literal ends at the character after it, which is not part of it."""


@dataclass
class _Frame:
    kind: str  # "{" or "["
    slot: str | int | None  # the key or index of the value being read in it
    state: str  # "first", "key", "colon", "value", "next"


class JsonReader:
    """Reads one JSON object or array; :attr:`done` once it is complete."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._stack: list[_Frame] = []
        self._string: str | None = None  # raw text of a string being read, quotes excluded
        self._is_key = False
        self._escaped = False
        self._literal: str | None = None
        self.done = False

    def _path(self) -> Path:
        return tuple(f.slot for f in self._stack if f.slot is not None)  # None: no key yet

    def push(self, ch: str) -> None:
        """Read one more character."""
        if self._string is not None:
            self._in_string(ch)
            return
        if self._literal is not None:
            if ch in _NUMBER or ch.isalpha():
                self._literal += ch
                self._check_literal(final=False)
                return
            self._end_literal()
        if self.done:
            raise JsonError("text after the value")
        if ch in _WS and self._stack:
            return
        if not self._stack:
            if ch not in "{[":
                raise JsonError("a call must be a JSON object or array")
            self._begin(ch)
            return
        self._structural(self._stack[-1], ch)

    def _structural(self, frame: _Frame, ch: str) -> None:
        state = frame.state
        if frame.kind == "{":
            if ch == "}" and state in ("first", "next"):
                self._close()
            elif ch == '"' and state in ("first", "key"):
                self._string, self._is_key = "", True
            elif ch == ":" and state == "colon":
                frame.state = "value"
            elif ch == "," and state == "next":
                frame.state = "key"
            elif state == "value":
                frame.state = "next"
                self._begin(ch)
            else:
                raise JsonError(f"unexpected {ch!r} in an object")
            return
        if ch == "]" and state in ("first", "next"):
            self._close()
        elif ch == "," and state == "next":
            assert isinstance(frame.slot, int)
            frame.slot, frame.state = frame.slot + 1, "value"
        elif state in ("first", "value"):
            frame.state = "next"
            self._begin(ch)
        else:
            raise JsonError(f"unexpected {ch!r} in an array")

    def _begin(self, ch: str) -> None:
        path = self._path()
        if ch == "{":
            self._listener.start(path, "{")
            self._stack.append(_Frame("{", None, "first"))
        elif ch == "[":
            self._listener.start(path, "[")
            self._stack.append(_Frame("[", 0, "first"))
        elif ch == '"':
            self._listener.start(path, '"')
            self._string, self._is_key = "", False
        elif ch in "-0123456789tfn":
            self._listener.start(path, "lit")
            self._literal = ch
        else:
            raise JsonError(f"{ch!r} cannot begin a JSON value")

    def _in_string(self, ch: str) -> None:
        assert self._string is not None
        if ord(ch) < 0x20:
            raise JsonError("a control character in a string")
        if self._escaped:
            self._escaped = False
        elif ch == "\\":
            self._escaped = True
        elif ch == '"':
            raw, self._string = self._string, None
            try:
                value = json.loads(f'"{raw}"')
            except json.JSONDecodeError:
                raise JsonError("a bad escape in a string") from None
            if self._is_key:
                frame = self._stack[-1]
                frame.slot, frame.state = value, "colon"
            else:
                self._ended(value)
            return
        self._string += ch

    def _check_literal(self, final: bool) -> Any:
        text = self._literal or ""
        if text[0].isalpha():
            if not any(w.startswith(text) for w in _WORDS) or (final and text not in _WORDS):
                raise JsonError(f"{text!r} is not a JSON literal")
            return None if text == "null" else text == "true"
        if any(c not in _NUMBER for c in text):
            raise JsonError(f"{text!r} is not a JSON number")
        if not final:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise JsonError(f"{text!r} is not a JSON number") from None
        if not isinstance(value, int | float):
            raise JsonError(f"{text!r} is not a JSON number")
        return value

    def _end_literal(self) -> None:
        value = self._check_literal(final=True)
        self._literal = None
        self._ended(value)

    def _close(self) -> None:
        self._stack.pop()
        self._ended(None)

    def _ended(self, value: Any) -> None:
        self._listener.end(self._path(), value)
        if not self._stack:
            self.done = True
