"""Reading server-sent events."""

from __future__ import annotations


def sse_events(body: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[6:] for line in body.splitlines() if line.startswith("data: ")]
