"""Ollama's ``options`` map, ``keep_alive`` durations and ``format``, read the way Ollama reads
them (``api/types.go``: ``Options.FromMap``, ``Duration.UnmarshalJSON``)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from llmserver.core.requests import JsonConstraint, Sampling
from llmserver.errors import InvalidRequestError

logger = logging.getLogger("llmserver.ollama")

#: Ollama options this server does not honour (engine and runner settings): logged, ignored
IGNORED = frozenset(
    {
        "num_keep", "typical_p", "repeat_last_n", "penalize_newline", "numa", "num_batch",
        "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread", "low_vram", "f16_kv",
        "logits_all", "vocab_only", "embedding_only", "draft_num_predict", "mirostat",
        "mirostat_tau", "mirostat_eta", "tfs_z",
    }
)  # fmt: skip
_INTS = ("num_predict", "num_ctx", "top_k", "seed")
#: float options and the range each must be in (low, high, low exclusive)
_FLOATS: dict[str, tuple[float, float, bool]] = {
    "temperature": (0.0, math.inf, False),
    "top_p": (0.0, 1.0, True),
    "min_p": (0.0, 1.0, False),
    "repeat_penalty": (0.0, math.inf, True),
    "presence_penalty": (-math.inf, math.inf, False),
    "frequency_penalty": (-math.inf, math.inf, False),
}
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def _integer(name: str, value: Any) -> int:
    # Go's FromMap takes JSON numbers, so 8192.0 (and 8192.5, truncated) are integers there
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequestError(f'option "{name}" must be of type integer', param=name)
    return int(value)


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f'option "{name}" must be of type float32', param=name)
    low, high, open_low = _FLOATS[name]
    if not (low < value if open_low else low <= value) or value > high:
        raise InvalidRequestError(f'option "{name}" is out of range: {value}', param=name)
    return float(value)


def _stops(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise InvalidRequestError('option "stop" must be of type array', param="stop")
    if not all(isinstance(s, str) for s in value):
        raise InvalidRequestError('option "stop" must be of an array of strings', param="stop")
    return tuple(s for s in value if s)


def sampling(options: Mapping[str, Any] | None) -> Sampling:
    """The core's sampling values from Ollama's ``options``.

    ``num_predict`` is an upper bound (the context's end stops a generation, as in Ollama);
    -1 (no limit), -2 (fill the context) or 0 leaves the length to the rest of the context;
    ``num_ctx`` caps the context for this request; a negative ``seed`` is random. Options we
    cannot honour are logged and ignored, as Ollama does with unknown ones. ``ignore_eos``
    (not Ollama's) generates past the end-of-text token, as on /v1.
    """
    values: dict[str, Any] = {}
    for name, value in (options or {}).items():
        if value is None:
            continue
        if name in _INTS:
            values[name] = _integer(name, value)
        elif name in _FLOATS:
            values[name] = _float(name, value)
        elif name == "stop":
            values["stop"] = _stops(value)
        elif name == "ignore_eos" and isinstance(value, bool):
            values["ignore_eos"] = value  # a server extra (the benchmark uses it)
        elif name in IGNORED:
            logger.info("ignoring Ollama option %s: not supported by this server", name)
        else:
            logger.warning("invalid option provided: %s (ignored)", name)
    predict = values.get("num_predict")
    num_ctx = values.get("num_ctx")
    seed = values.get("seed")
    top_k = values.get("top_k")
    if top_k is not None and top_k < 0:
        raise InvalidRequestError(f'option "top_k" is out of range: {top_k}', param="top_k")
    if num_ctx is not None and num_ctx < 1:
        raise InvalidRequestError(f'option "num_ctx" is out of range: {num_ctx}', param="num_ctx")
    return Sampling(
        max_tokens=predict if predict is not None and predict > 0 else None,
        temperature=values.get("temperature"),
        top_p=values.get("top_p"),
        top_k=top_k,
        min_p=values.get("min_p"),
        repeat_penalty=values.get("repeat_penalty"),
        presence_penalty=values.get("presence_penalty"),
        frequency_penalty=values.get("frequency_penalty"),
        seed=seed if seed is not None and seed >= 0 else None,
        stop=values.get("stop", ()),
        ignore_eos=values.get("ignore_eos", False),
        context_limit=num_ctx,
    )


def keep_alive(value: float | str | None) -> float | bool | None:
    """Seconds to keep the model loaded after this request: ``False`` when not given, None
    for forever (any negative duration), else the seconds (0: unload now)."""
    if value is None:
        return False
    if isinstance(value, bool):
        raise InvalidRequestError("keep_alive must be a duration", param="keep_alive")
    seconds = float(value) if isinstance(value, int | float) else _duration(value.strip())
    return None if seconds < 0 else seconds


def _duration(text: str) -> float:
    """Go's ``time.ParseDuration`` ("1h30m", "300ms", "-1.5h"); a bare number is seconds."""
    bad = InvalidRequestError(f'time: invalid duration "{text}"', param="keep_alive")
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    try:
        return sign * float(body)
    except ValueError:
        pass
    if not body:
        raise bad
    total, pos = 0.0, 0
    for match in _PART.finditer(body):
        if match.start() != pos:
            raise bad
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body):
        raise bad
    return sign * total


def constraint(value: str | dict[str, Any] | None) -> JsonConstraint | None:
    """``format``: "json" for any JSON object, a JSON schema for that schema, "" for none."""
    if value is None or value == "":
        return None
    if value == "json":
        return JsonConstraint(None)
    if isinstance(value, dict):
        return JsonConstraint(value)
    raise InvalidRequestError(
        f'invalid format: "{value}"; expected "json" or a valid JSON schema', param="format"
    )
