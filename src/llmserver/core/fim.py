"""Fill-in-the-middle: a model's FIM format and the prompt it makes of the code around a hole.

The format comes from the model's config (``fim:`` strings, for models whose metadata lacks
them) or else from what the backend read of the model (a GGUF's FIM token ids). The prompt
follows llama.cpp's ``/infill``: other files first (repo-level formats name each one), then
prefix, suffix and middle markers in the model's order, then the text already typed after the
middle marker. A model without a format is refused, never sent a silently wrong prompt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from llmserver.errors import InvalidRequestError

if TYPE_CHECKING:
    from llmserver.core.manager import ModelHandle

#: the repository name a repo-level prompt gives (llama.cpp's ``/infill`` gives the same)
REPO_NAME = "myproject"


@dataclass(frozen=True, slots=True)
class FimFormat:
    """The markers around the prefix, the suffix and the hole, and their order."""

    prefix: str
    suffix: str
    middle: str
    order: Literal["psm", "spm"] = "psm"
    repo: str = ""
    file_sep: str = ""


@dataclass(frozen=True, slots=True)
class Infill:
    """The code around the hole: ``prefix`` before it, ``suffix`` after it, ``typed`` the text
    already written in the hole (llama-server's ``prompt``), ``extra`` other files as
    ``(file name, text)``."""

    prefix: str
    suffix: str
    typed: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def texts(self) -> tuple[str, ...]:
        """Every text of the request (what masking and logs see)."""
        return (self.prefix, self.suffix, self.typed, *(text for _, text in self.extra))


@dataclass(frozen=True, slots=True)
class CodeLimits:
    """llama-server's code-completion limits (0: none). ``n_indent``: once the hole's code has
    gone to a new line, a line indented less than this ends the completion before the line's
    text (its indentation is kept), so a completion stops where the block it fills ends.
    ``time_ms``: once the code has gone to a new line, the completion ends when it has been
    generating for longer than this."""

    n_indent: int = 0
    time_ms: int = 0


@dataclass(slots=True)
class LimitCut:
    """One choice's generated text checked against :class:`CodeLimits` as it streams. A cut
    always falls in the newest text (a line is decided by its first character past the
    indentation), so nothing already sent is taken back."""

    limits: CodeLimits
    clock: Callable[[], float] = time.perf_counter
    _text: str = ""
    _started: float | None = None
    #: where the next undecided line's newline is looked for
    _scan: int = 0

    def feed(self, text: str) -> tuple[str, bool]:
        """The part of ``text`` that may go out, and whether the completion ends here."""
        if self._started is None:
            self._started = self.clock()
        start = len(self._text)
        self._text += text
        if self.limits.n_indent and (cut := self._indent_cut()) is not None:
            return text[: cut - start], True
        late = (self.clock() - self._started) * 1000 > self.limits.time_ms
        return text, bool(self.limits.time_ms) and "\n" in self._text and late

    def _indent_cut(self) -> int | None:
        """Where the first line indented less than ``n_indent`` starts its text, if one has.
        As llama-server counts it: spaces and tabs are indentation, and an empty line ends the
        completion too."""
        text = self._text
        while (newline := text.find("\n", self._scan)) >= 0:
            pos = newline + 1
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if pos == len(text):
                return None  # the line has only indentation so far: undecided
            if pos - newline - 1 < self.limits.n_indent:
                return pos
            self._scan = pos
        return None


def fim_format(handle: ModelHandle) -> FimFormat | None:
    """The model's FIM format: its config's, else its metadata's (known once loaded)."""
    if (configured := handle.config.fim) is not None:
        return FimFormat(
            configured.prefix,
            configured.suffix,
            configured.middle,
            configured.order,
            configured.repo,
            configured.file_sep,
        )
    fmt = handle.prompt_format
    if fmt is None or fmt.fim is None:
        return None
    t = fmt.fim
    return FimFormat(t.prefix, t.suffix, t.middle, "psm", t.repo, t.file_sep)


def require_format(handle: ModelHandle) -> FimFormat:
    """The model's FIM format, or the 400 every surface gives for ``suffix`` without one."""
    fmt = fim_format(handle)
    if fmt is None:
        raise InvalidRequestError(
            f'"{handle.id}" does not support insert: it has no fill-in-the-middle format, so '
            "'suffix' cannot be used",
            param="suffix",
            code="unsupported_parameter",
        )
    return fmt


def fim_prompt(fmt: FimFormat, infill: Infill) -> str:
    """The prompt for ``infill`` in format ``fmt``."""
    head = _files(fmt, infill.extra) if infill.extra else ""
    prefix = f"{fmt.prefix}{infill.prefix}"
    suffix = f"{fmt.suffix}{infill.suffix}"
    body = suffix + prefix if fmt.order == "spm" else prefix + suffix
    return f"{head}{body}{fmt.middle}{infill.typed}"


def _files(fmt: FimFormat, extra: Sequence[tuple[str, str]]) -> str:
    """Other files as context: named after the file separator where the model has one."""
    out = f"{fmt.repo}{REPO_NAME}\n" if fmt.repo else ""
    for name, text in extra:
        out += f"{fmt.file_sep}{name}\n{text}" if fmt.file_sep else text
    if fmt.file_sep:
        out += f"{fmt.file_sep}filename\n"  # the file being edited, as llama.cpp names it
    return out
