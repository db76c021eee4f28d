"""Real server processes: JSON log lines in the rotating file, and usage that survives a restart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from support import fake_model, run_server

pytestmark = pytest.mark.integration

SECRET_KEY = "sk-test-Zq81mvXk2LpP0r3s"
PII = {"email": "jane.doe@example.com", "phone": "010-5843-6050"}
ACCESS_FIELDS = {
    "request_id",
    "client",
    "key_name",
    "method",
    "path",
    "status",
    "model",
    "backend",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "latency_ms",
    "tokens_per_s",
    "streamed",
}


def _config(**extra: Any) -> dict[str, Any]:
    return {"models": [fake_model()], **extra}


def test_json_log_lines(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    args = ["--log-format", "json", "--log-dir", str(logs), "--log-level", "debug"]
    text = f"write to {PII['email']} or call {PII['phone']} about the late delivery"
    headers = {"Authorization": f"Bearer {SECRET_KEY}"}
    with run_server(tmp_path, _config(), args=args) as server:
        client = OpenAI(base_url=server.base_url, api_key=SECRET_KEY, max_retries=0)
        plain = client.chat.completions.with_raw_response.create(
            model="fake", messages=[{"role": "user", "content": text}]
        )
        plain_id = plain.headers["x-request-id"]
        streamed = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": text}], "stream": True},
            headers={**headers, "x-request-id": "client-chosen-7"},
        )
        assert streamed.headers["x-request-id"] == "client-chosen-7"
        usage = plain.parse().usage
        assert usage is not None
    content = (logs / "llmserver.log").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in content.splitlines()]  # every line is JSON
    access = {line["request_id"]: line for line in lines if line["logger"] == "llmserver.access"}
    for rid, stream in ((plain_id, False), ("client-chosen-7", True)):
        line = access[rid]
        assert not ACCESS_FIELDS - set(line), ACCESS_FIELDS - set(line)
        assert line["status"] == 200
        assert line["model"] == "fake"
        assert line["backend"] == "fake"
        assert line["streamed"] is stream
        assert line["prompt_tokens"] == usage.prompt_tokens
        assert line["completion_tokens"] == usage.completion_tokens  # no include_usage asked
        assert line["ttft_ms"] is not None
        assert line["client"] == "127.0.0.1"
    debug = [line for line in lines if line["message"].startswith("request text")]
    assert {line["request_id"] for line in debug} == {plain_id, "client-chosen-7"}
    assert "[EMAIL]" in debug[0]["message"]
    assert SECRET_KEY not in content
    for value in PII.values():
        assert value not in content
    assert "delivery" not in content  # the masked text is cut to 50 characters


def _chat(base_url: str, n: int) -> tuple[int, int]:
    """``n`` chats and one streamed repeat of the first; the expected (prompt, completion)."""
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    counts = []
    for i in range(n):
        out = client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": f"question {i}"}]
        )
        assert out.usage is not None
        counts.append((out.usage.prompt_tokens, out.usage.completion_tokens))
    # the fake model is deterministic: this stream's usage is the first chat's
    stream = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "question 0"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    counts.append(counts[0])
    return sum(p for p, _ in counts), sum(c for _, c in counts)


def test_usage_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    config = _config(usage_db=str(db))
    with run_server(tmp_path, config) as first:
        prompt, completion = _chat(first.base_url, 3)
    assert "models closed" in first.log()  # a clean shutdown (SIGTERM), which flushes usage
    with run_server(tmp_path, config) as second:
        rows = httpx.get(f"{second.url}/admin/usage").json()["data"]
        today = rows[0]["day"] if rows else ""
        assert httpx.get(f"{second.url}/admin/usage", params={"since": today}).json()["data"]
    expected = (4, prompt, completion)
    assert [(r["key_name"], r["model"]) for r in rows] == [("anonymous", "fake")]
    (row,) = rows
    assert (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == expected
    out = subprocess.run(
        [sys.executable, "-m", "llmserver", "usage", "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[1].split() == [
        today,
        "anonymous",
        "fake",
        *(str(v) for v in (*expected, prompt + completion)),
    ]
