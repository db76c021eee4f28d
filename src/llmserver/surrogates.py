"""The one rule for unpaired UTF-16 surrogates in JSON text: each becomes U+FFFD.

JSON allows ``"\\ud800"`` and Python decodes it into a string no UTF-8 encoder takes, so such a
string would fail deep inside whatever first encodes it (a tokenizer, a store, a log line). Every
JSON body and batch line is rewritten here before it is parsed, as Go's ``encoding/json`` (and so
Ollama) reads such input: a lone surrogate escape is replaced by the replacement character's
escape, which has the same length, so nothing else in the text moves. A well-formed pair, and an
escaped backslash followed by ``u``, are left as they are.
"""

from __future__ import annotations

import re

#: an escaped backslash (consumed whole, so what follows it is never read as an escape), a
#: high-low surrogate pair, or a surrogate escape on its own
_ESCAPES = re.compile(
    rb"\\\\"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
)
#: the cheap test that almost every body fails
_ANY_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_REPLACEMENT = rb"\ufffd"


def _one(match: re.Match[bytes]) -> bytes:
    escape = match.group()
    return _REPLACEMENT if len(escape) == 6 else escape


def lone_surrogates_replaced(text: bytes) -> bytes:
    """``text`` (JSON) with every unpaired surrogate escape replaced by ``\\ufffd``."""
    if _ANY_SURROGATE.search(text) is None:
        return text
    return _ESCAPES.sub(_one, text)
