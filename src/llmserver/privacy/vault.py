"""Masking that gives the answer back: one request's values behind numbered placeholders.

The request's texts are masked with ``[PHONE_1]``, ``[EMAIL_2]``... (one counter for the
request; the same value always gets the same placeholder), so the model sees only placeholders;
the vault keeps what each stands for, and the answer has them put back before it reaches the
caller. A stream is restored as it arrives: text that may still become a placeholder is held
until it is one or cannot be. A placeholder the vault did not issue (the model invented or
altered it) is left as it is, and logged.
"""

from __future__ import annotations

import logging
import re

from llmserver.privacy.masker import PIIMasker
from llmserver.privacy.normalize import normalize
from llmserver.privacy.types import MaskingError, PIIType

logger = logging.getLogger("llmserver.privacy")

PLACEHOLDER = re.compile(r"\[([A-Z]+)_([1-9][0-9]*)\]")
#: what may still grow into a placeholder at the end of a stream's text
_OPEN = re.compile(r"\[(?:[A-Z]+(?:_(?:[1-9][0-9]*)?)?)?\Z")
#: a longer held text cannot be a placeholder being written
_LONGEST = 24


class Vault:
    """One request's placeholders and the values behind them."""

    def __init__(self, masker: PIIMasker) -> None:
        self._masker = masker
        self._placeholders: dict[tuple[PIIType, str], str] = {}
        self._values: dict[str, str] = {}

    def mask(self, text: str) -> str:
        """``text`` normalised, with each value the masker finds replaced by its numbered
        placeholder. Any failure is a :class:`MaskingError` (callers fail closed)."""
        try:
            normal = normalize(text)
            parts: list[str] = []
            position = 0
            for match in self._masker.find(normal):
                parts += [normal[position : match.start], self._placeholder(match.type, match.text)]
                position = match.end
            return "".join([*parts, normal[position:]])
        except Exception as exc:
            logger.error("PII masking failed: %s", type(exc).__name__)
            raise MaskingError("PII masking failed") from exc

    def _placeholder(self, kind: PIIType, value: str) -> str:
        key = (kind, value)
        if (known := self._placeholders.get(key)) is not None:
            return known
        placeholder = f"[{kind.value}_{len(self._values) + 1}]"
        self._placeholders[key] = placeholder
        self._values[placeholder] = value
        return placeholder

    def restore(self, text: str) -> str:
        """``text`` with every placeholder this vault issued replaced by its value."""
        return PLACEHOLDER.sub(self._value, text)

    def _value(self, match: re.Match[str]) -> str:
        placeholder = match.group()
        value = self._values.get(placeholder)
        if value is None:
            logger.info("placeholder %s in the answer was not issued; left as it is", placeholder)
            return placeholder
        return value

    def stream(self) -> RestoreStream:
        """A restorer for one stream of deltas."""
        return RestoreStream(self)


class RestoreStream:
    """One stream's text restored as it arrives; a placeholder split across deltas is held
    until it is whole."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._held = ""

    def feed(self, text: str) -> str:
        """The restored text that can be released now."""
        text = self._held + text
        start = text.rfind("[")
        if start >= 0 and len(text) - start <= _LONGEST and _OPEN.match(text, start):
            text, self._held = text[:start], text[start:]
        else:
            self._held = ""
        return self._vault.restore(text)

    def flush(self) -> str:
        """What was held, at the stream's end (an unfinished placeholder is plain text)."""
        held, self._held = self._held, ""
        return self._vault.restore(held)
