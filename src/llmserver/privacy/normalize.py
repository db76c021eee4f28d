"""Text normalisation applied before recognition and masking."""

from __future__ import annotations

import re
import unicodedata

# Invisible characters that split a value without showing: zero-width space, non-joiner and
# joiner, word joiner, byte-order mark, and the soft hyphen.
_INVISIBLE = re.compile("[\u200b-\u200d\u2060\ufeff\u00ad]")


def is_invisible(char: str) -> bool:
    """Return True if ``char`` is one of the characters :func:`normalize` removes."""
    return _INVISIBLE.fullmatch(char) is not None


def normalize(text: str) -> str:
    """Return ``text`` with invisible characters removed, then NFKC-normalised.

    NFKC folds fullwidth forms (``０１０``, ``＠``) to ASCII, so one set of patterns covers them.
    Invisible characters are removed first so that a value split by them composes again.
    """
    return unicodedata.normalize("NFKC", _INVISIBLE.sub("", text))
