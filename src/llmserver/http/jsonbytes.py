"""JSON bytes for every body and event the server writes.

orjson is fast but refuses a string holding an unpaired UTF-16 surrogate (``"\\ud800"``), which
JSON allows escaped and Python decodes from a request: a model name or a prompt echoed back in
an answer or an error would turn into a 500. Such a body is written by the standard library
instead, which escapes the surrogate, so the client gets back exactly what it sent.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """``value`` as JSON bytes (UTF-8; unpaired surrogates escaped as ``\\uXXXX``)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode("ascii")
