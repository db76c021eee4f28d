"""Validation of a batch input file, all or nothing, as OpenAI does it.

Every line must be a JSON object with a unique ``custom_id``, ``method`` POST, ``url`` equal to
the batch's endpoint and a ``body`` the endpoint accepts (checked by the endpoint's own
:class:`~llmserver.jobs.lines.LineHandler`), naming a model that exists and that the creating key
may use, without ``stream: true``. Each violation names its 1-based ``line`` and the ``param``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from llmserver.errors import APIError
from llmserver.jobs.lines import LineHandler
from llmserver.surrogates import lone_surrogates_replaced

#: at most this many errors are reported (the batch fails on the first one anyway)
MAX_REPORTED = 100


@dataclass(slots=True)
class Checked:
    """The lines ``(line_no, custom_id, body JSON)`` of a valid file, or the errors."""

    lines: list[tuple[int, str, str]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, line: int | None, code: str, message: str, param: str | None) -> None:
        """Note one violation."""
        if len(self.errors) < MAX_REPORTED:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


class _Line:
    """Checks of one parsed line."""

    def __init__(self, out: Checked, number: int) -> None:
        self.out = out
        self.number = number

    def fail(self, code: str, message: str, param: str | None) -> None:
        self.out.fail(self.number, code, message, param)


def check_file(
    path: Path,
    endpoint: str,
    handler: LineHandler,
    authorise: Callable[[str | None], None],
    max_lines: int,
) -> Checked:
    """Read and check every line of ``path``; ``authorise`` raises for a model the key may not
    use (or that does not exist)."""
    out = Checked()
    seen: set[str] = set()
    models: dict[str | None, APIError | None] = {}
    count = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            count += 1
            if count > max_lines:
                out.fail(
                    number, "too_many_lines", f"A batch may hold at most {max_lines} lines.", None
                )
                break
            _check_line(_Line(out, number), raw, endpoint, handler, seen, models, authorise)
    if count == 0:
        out.fail(None, "empty_file", "The input file has no lines.", None)
    return out


def _check_line(
    line: _Line,
    raw: bytes,
    endpoint: str,
    handler: LineHandler,
    seen: set[str],
    models: dict[str | None, APIError | None],
    authorise: Callable[[str | None], None],
) -> None:
    try:
        data = orjson.loads(lone_surrogates_replaced(raw))
    except orjson.JSONDecodeError:
        line.fail("invalid_json_line", "This line is not valid JSON.", None)
        return
    if not isinstance(data, dict):
        line.fail("invalid_json_line", "Each line must be a JSON object.", None)
        return
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        line.fail(
            "missing_required_parameter", "Each line needs a string 'custom_id'.", "custom_id"
        )
        return
    if custom_id in seen:
        line.fail("duplicate_custom_id", f"custom_id '{custom_id}' is used twice.", "custom_id")
        return
    seen.add(custom_id)
    if data.get("method") != "POST":
        line.fail("invalid_method", "Only the POST method is supported.", "method")
        return
    if data.get("url") != endpoint:
        message = f"The url must be the batch's endpoint, '{endpoint}'."
        line.fail("mismatched_url", message, "url")
        return
    body = data.get("body")
    if not isinstance(body, dict):
        line.fail("missing_required_parameter", "Each line needs a JSON object 'body'.", "body")
        return
    if body.get("stream"):
        line.fail("stream_not_supported", "Batch lines cannot stream.", "body.stream")
        return
    try:
        model = handler.check(body)
    except APIError as err:
        line.fail(err.code or "invalid_request", err.message, f"body.{err.param or ''}".rstrip("."))
        return
    if model not in models:
        try:
            authorise(model)
            models[model] = None
        except APIError as err:
            models[model] = err
    if (refused := models[model]) is not None:
        line.fail(refused.code or "invalid_model", refused.message, "body.model")
        return
    line.out.lines.append((line.number, custom_id, orjson.dumps(body).decode()))
