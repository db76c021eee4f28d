"""Helpers for the batch tests: input files, waiting through ``?wait=``, reading results."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import openai
from openai.types import Batch

FINAL = {"completed", "failed", "expired", "cancelled"}


def chat_lines(n: int, model: str | None = None, max_tokens: int = 4, **body: Any) -> bytes:
    """``n`` chat lines ``req-0`` ... with distinct prompts."""
    out = []
    for i in range(n):
        line_body: dict[str, Any] = {
            "messages": [{"role": "user", "content": f"Say something about the number {i}."}],
            "max_tokens": max_tokens,
            **body,
        }
        if model is not None:
            line_body["model"] = model
        out.append(
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": line_body,
            }
        )
    return jsonl(out)


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    """Lines as JSONL bytes."""
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def upload(client: openai.OpenAI, data: bytes, name: str = "input.jsonl") -> str:
    """Upload ``data`` as a batch input file; its id."""
    return client.files.create(file=(name, io.BytesIO(data)), purpose="batch").id


def wait_final(client: openai.OpenAI, batch_id: str, timeout: float = 3600) -> Batch:
    """Wait (with ``?wait=``, no busy polling) until the batch reaches a final status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id, extra_query={"wait": 10})
        if batch.status in FINAL:
            return batch
    raise TimeoutError(f"batch {batch_id} still not final after {timeout} s")


def wait_for(client: openai.OpenAI, batch_id: str, done: int, timeout: float = 1800) -> Batch:
    """Poll until at least ``done`` lines are finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        counts = batch.request_counts
        if counts is not None and counts.completed + counts.failed >= done:
            return batch
        time.sleep(0.2)
    raise TimeoutError(f"batch {batch_id} did not reach {done} lines")


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """A result file's lines (none for no file)."""
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]
