"""A reasoning model's thought: where it starts and ends, and the streaming splitter that
separates it from the answer.

The splitter lives beside the backends because both sides read the same text with it: the core
splits every choice's stream into thought and answer (once, for every surface), and an engine
that budgets thoughts or constrains only the answer (llama.cpp) follows the same markers to
know when the thought has ended.
"""

from __future__ import annotations

import codecs
from collections import deque
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class ThoughtSpec:
    """How one generation's output holds a thought.

    ``open``: the prompt already opened the thought (DeepSeek-R1's template ends the generation
    prompt with ``<think>\\n``), so the output is thought up to ``end``; otherwise the output
    may begin with ``start``. ``budget``: thought tokens after which an engine that can ends
    the thought itself (writes ``end``) so the model goes on to answer; None: no limit.
    ``drop``: the caller switched thinking off and the template cannot: the thought is
    generated but not shown. ``asked``: what the caller asked (None: the model's default), for
    an upstream engine to be told.
    """

    start: str = "<think>"
    end: str = "</think>"
    open: bool = False
    budget: int | None = None
    drop: bool = False
    asked: bool | None = None


State = Literal["pending", "thought", "answer"]


def _partial(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that begins ``marker`` (held back)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class ThoughtSplitter:
    """Splits a streamed reply into its thought and its answer.

    A marker split across two pieces is held back until it is whole, never leaked into either
    side. The thought loses its leading and trailing whitespace and the answer its leading
    whitespace (the blank line models write after the end marker), as Ollama and llama-server
    show them. A reply that does not begin with the start marker (whitespace aside) has no
    thought: it is all answer.
    """

    __slots__ = ("_held", "_lead", "end", "start", "state")

    def __init__(self, spec: ThoughtSpec) -> None:
        self.start = spec.start
        self.end = spec.end
        self.state: State = "thought" if spec.open else "pending"
        self._held = ""
        #: the side now being written has written nothing but whitespace yet
        self._lead = True

    @property
    def thinking(self) -> bool:
        """Whether the reply is inside its thought (or may still open one)."""
        return self.state != "answer"

    def feed(self, text: str) -> tuple[str, str]:
        """Add a piece of the reply; return the (thought, answer) text safe to show now."""
        thought = answer = ""
        buf = self._held + text
        self._held = ""
        if self.state == "pending":
            stripped = buf.lstrip()
            if stripped.startswith(self.start):
                self.state, self._lead = "thought", True
                buf = stripped[len(self.start) :]
            elif self.start.startswith(stripped):
                self._held = buf  # whitespace, or the beginning of the start marker
                return "", ""
            else:
                self.state = "answer"
                self._lead = False  # no thought: the answer is shown as written
        if self.state == "thought":
            i = buf.find(self.end)
            if i < 0:
                keep = _partial(buf, self.end)
                body = buf[: len(buf) - keep]
                shown = body.rstrip()
                self._held = body[len(shown) :] + buf[len(buf) - keep :]
                return self._lead_strip(shown), ""
            thought = self._lead_strip(buf[:i].rstrip())
            self.state, self._lead = "answer", True
            buf = buf[i + len(self.end) :]
        answer = self._lead_strip(buf)
        return thought, answer

    def _lead_strip(self, text: str) -> str:
        if self._lead:
            text = text.lstrip()
            self._lead = not text
        return text

    def finish(self) -> tuple[str, str]:
        """The end of the reply: release what was held back as (thought, answer)."""
        held, self._held = self._held, ""
        if self.state == "thought":
            return self._lead_strip(held.rstrip()), ""
        if self.state == "pending":
            self.state = "answer"
            return "", held.strip() and held
        return "", held


def split(spec: ThoughtSpec, text: str) -> tuple[str, str]:
    """A whole reply's (thought, answer)."""
    splitter = ThoughtSplitter(spec)
    thought, answer = splitter.feed(text)
    more_thought, more_answer = splitter.finish()
    return thought + more_thought, answer + more_answer


class ThoughtFollower:
    """An engine's view of one sequence's thought: it reads each generated token's text
    (special tokens written out) with the same splitter the core uses, counts the thought's
    tokens and, once the budget is spent, hands out the end marker's tokens to feed instead of
    sampled ones, so the model goes on to answer."""

    __slots__ = ("_decoder", "_forced", "_spent", "budget", "end_tokens", "splitter", "thought")

    def __init__(self, spec: ThoughtSpec, end_tokens: list[int]) -> None:
        self.splitter = ThoughtSplitter(spec)
        self.budget = spec.budget
        self.end_tokens = end_tokens
        #: tokens generated inside the thought
        self.thought = 0
        self._forced: deque[int] = deque()
        #: the end marker was scheduled (once: never again)
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

    @property
    def instead_of_end_allowed(self) -> bool:
        """Whether an end of reply now would still be turned into the end marker."""
        return not self.done and not self._spent and bool(self.end_tokens)

    def instead_of_end(self) -> int | None:
        """The model ended its reply inside the thought: the end marker's first token to feed
        instead (the thought is closed and the model answers), once; None: let it end."""
        if not self.instead_of_end_allowed:
            return None
        self._spend()
        return self.forced()

    def complete_marker(self) -> None:
        """The model wrote the end marker's first token where it would have ended its reply
        (an engine that cannot swap a sampled token moves the end's chance onto it): the
        rest of the marker follows, once."""
        if not self.done and not self._spent:
            self._spent = True
            self._forced.extend(self.end_tokens[1:])

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
