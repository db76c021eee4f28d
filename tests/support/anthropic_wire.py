"""Reading Anthropic's wire format: named SSE events and the error envelope."""

from __future__ import annotations

import json
from typing import Any


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE event; every event has both lines."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: "), block
        assert lines[1].startswith("data: "), block
        out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def error_of(resp: Any, status: int, kind: str) -> str:
    """The message of an error in Anthropic's envelope, after checking status and type."""
    assert resp.status_code == status, resp.text
    payload = resp.json()
    assert payload["type"] == "error"
    assert set(payload["error"]) == {"type", "message"}
    assert payload["error"]["type"] == kind
    return str(payload["error"]["message"])
